"""No secret is ever written anywhere: after every other test has trained locally and on Ray, searched,
served and run a job, with a distinctive S3 secret and a distinctive bearer token in every process's
environment, neither appears in any file they left behind or any object in the bucket."""

import glob
from pathlib import Path

import pytest

from draw_service import storage


@pytest.mark.last
def test_no_secret_is_written_anywhere(s3, serve_token, tmp_path_factory):
    secrets = {"the S3 secret key": s3.secret_key.encode(), "the Serve bearer token": serve_token.encode()}
    assert s3.secret_key.startswith("draw-secret-") and len(s3.secret_key) > 30
    client = storage.boto3_client()
    found, objects = [], 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
        for obj in page.get("Contents", []):  # runs, checkpoints, searches (tuner.pkl), W&B files, best records
            data = client.get_object(Bucket=s3.bucket, Key=obj["Key"])["Body"].read()
            objects += 1
            found += [f"s3://{s3.bucket}/{obj['Key']}: {name}" for name, secret in secrets.items() if secret in data]
    files = ray_files = 0
    # Every file the tests' runs wrote locally (run folders, W&B offline files, pictures, records), and every
    # file under Ray's session folders: every process's logs (the runtime-env agent's among them, which logs
    # each runtime env it sets up), the job drivers' output, Ray's own state.
    roots = [Path(tmp_path_factory.getbasetemp())] + [Path(p) for p in glob.glob("/tmp/ray/session_2*")]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                files += 1
                ray_files += root.name.startswith("session_")
                found += [f"{path}: {name}" for name, secret in secrets.items() if secret in data]
    print(f"\nsecret grep: {objects} storage objects and {files} files searched ({ray_files} under Ray's session "
          f"folders), {len(found)} holding a secret")
    assert objects > 50 and files > 100 and ray_files > 50  # the other tests did leave things behind to search
    assert found == []
