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
    files = 0
    # Every file the tests' runs wrote locally (run folders, W&B offline files, pictures, records), and the
    # logs of the jobs submitted to Ray (their drivers' output).
    roots = [tmp_path_factory.getbasetemp()]
    job_logs = glob.glob("/tmp/ray/session_*/logs/job-driver-*.log")
    for path in [p for root in roots for p in Path(root).rglob("*")] + [Path(p) for p in job_logs]:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            files += 1
            found += [f"{path}: {name}" for name, secret in secrets.items() if secret in data]
    print(f"\nsecret grep: {objects} storage objects and {files} files searched, {len(found)} holding a secret")
    assert objects > 50 and files > 100  # the other tests did leave things behind to search
    assert found == []
