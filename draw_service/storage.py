"""One notion of a storage URI: a local path, `file://...` or `s3://bucket/prefix`.

S3 settings come from the standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`), so AWS, MinIO and SeaweedFS work alike. Data moves through
pyarrow's filesystems (which Ray Train also takes for checkpoints); boto3 answers the early question
"can I use this bucket?" with an error that says why not.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from .errors import UserError

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"  # in the name of a file being written; one left behind is a write that was killed


class StorageError(UserError):
    """Storage cannot be used; the message names the URI and the reason."""


@dataclass(frozen=True)
class Location:
    """A resolved URI: a pyarrow filesystem and the path on it (`bucket/key` on S3)."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def join(self, *parts: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, *parts), posixpath.join(self.uri, *parts))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))


DEFAULT_REGION = "us-east-1"  # the AWS SDKs' own default, where neither AWS_REGION nor AWS_DEFAULT_REGION is set


@dataclass(frozen=True)
class S3Endpoint:
    """Where S3 requests go: `host` (host:port) and `scheme` of a custom endpoint (None: AWS itself), and the
    region."""

    host: str | None
    scheme: str
    region: str

    @property
    def url(self) -> str | None:
        return f"{self.scheme}://{self.host}" if self.host else None

    def __str__(self) -> str:  # how messages name it
        return self.url or "AWS S3"


def s3_endpoint() -> S3Endpoint:
    """The S3 endpoint and region from the standard AWS variables (`AWS_ENDPOINT_URL_S3` before
    `AWS_ENDPOINT_URL`, `AWS_REGION` before `AWS_DEFAULT_REGION`, as the AWS SDKs read them): the one place
    this package reads them."""
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    if not url:
        return S3Endpoint(None, "https", region)
    parsed = urlparse(url if "://" in url else f"https://{url}")
    return S3Endpoint(parsed.netloc, parsed.scheme, region)


@lru_cache(maxsize=8)
def _s3(endpoint: str | None, scheme: str | None, region: str | None, _credentials: int):
    # No keys are handed to the filesystem: it finds credentials itself (the AWS variables, a credentials
    # file, an instance profile, IRSA) wherever it runs. Ray pickles this object into Train and Tune state
    # in storage (tuner.pkl, experiment state), so a key given here would be written there in plain text.
    return pafs.S3FileSystem(
        region=region, endpoint_override=endpoint, scheme=scheme or "https",
        connect_timeout=5, request_timeout=30, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=5),
    )


def s3_filesystem() -> pafs.S3FileSystem:
    endpoint = s3_endpoint()
    # Keyed by a hash of the credentials in the environment, so a change of keys gets a fresh client.
    credentials = hash((os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"),
                        os.environ.get("AWS_SESSION_TOKEN"), os.environ.get("AWS_PROFILE")))
    return _s3(endpoint.host, endpoint.scheme, endpoint.region, credentials)


def is_local(uri: str) -> bool:
    """Whether `uri` names a local path (a plain path or file://...) rather than a remote store."""
    return "://" not in uri or uri.startswith("file://")


def resolve(uri: str | os.PathLike | Location) -> Location:
    if isinstance(uri, Location):
        return uri
    uri = str(uri)
    if uri.startswith("s3://"):
        path = uri[len("s3://"):].strip("/")
        if not path:
            raise StorageError(f"{uri!r} names no bucket; use s3://bucket/prefix")
        return Location(s3_filesystem(), path, "s3://" + path)
    if not is_local(uri):
        raise StorageError(f"unsupported storage URI {uri!r}: use a local path, file://... or s3://bucket/prefix")
    path = str(Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser().resolve())
    return Location(pafs.LocalFileSystem(), path, path)


def absolute(uri: str) -> str:
    """`uri` as any process reads it: a local path made absolute here, where it was given (Ray Tune runs each
    trial in a working directory of its own, so a relative path would land there), other URIs unchanged."""
    return resolve(uri).uri if is_local(uri) else uri


def _wrap(loc: Location, what: str, err: Exception, attempts: int = 1) -> StorageError:
    text = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
    if loc.is_s3 and any(code in str(err) for code in _DENIED):
        return _refused(loc, f"{what} was refused")
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    return StorageError(f"{what} {loc.uri} failed{tries}: {type(err).__name__}: {text}")


# S3 answers that no retry will change; anything else from S3 (a dropped connection, a timeout, a 5xx) is
# worth another try.
_PERMANENT = ("NoSuchBucket", "NO_SUCH_BUCKET", "InvalidBucketName", "NoSuchKey")
RETRIES = 4  # attempts of an S3 read or write, beyond pyarrow's own retries of each request
BACKOFF_S = 1.0  # first wait; doubled each time (1, 2, 4 s)


def _with_retries(loc: Location, what: str, fn):
    """`fn()`, retried with backoff while S3 fails in a way that may pass (a restart, a network blip)."""
    for attempt in range(1, RETRIES + 1):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except OSError as err:
            permanent = any(code in str(err) for code in _DENIED + _PERMANENT)
            if not loc.is_s3 or permanent or attempt == RETRIES:
                raise _wrap(loc, what, err, attempt) from err
            wait = BACKOFF_S * 2 ** (attempt - 1)
            log.warning("%s %s failed (%s); retrying in %.1f s", what, loc.uri, str(err).splitlines()[0][:200], wait)
            time.sleep(wait)


def read_bytes(uri: str | Location) -> bytes:
    loc = resolve(uri)

    def read() -> bytes:
        with loc.fs.open_input_stream(loc.path) as f:
            return f.read()
    try:
        return _with_retries(loc, "reading", read)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{loc.uri} does not exist") from err


def write_bytes(uri: str | Location, data: bytes) -> None:
    """Write a whole object durably; readers see the old object or the new one, never a half-written file.

    On S3 a PUT is atomic and is retried while S3 fails in a way that may pass. Locally the bytes go to a
    temporary file that is flushed to disk before it is renamed into place (and removed if anything fails),
    so a crash or a kill leaves either the old file or the complete new one."""
    loc = resolve(uri)
    if loc.is_s3:
        def put() -> None:
            with loc.fs.open_output_stream(loc.path) as f:
                f.write(data)
        _with_retries(loc, "writing", put)
        return
    folder = posixpath.dirname(loc.path)
    tmp = f"{loc.path}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, loc.path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)
    except OSError as err:
        raise _wrap(loc, "writing", err) from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def exists(uri: str | Location) -> bool:
    loc = resolve(uri)
    try:
        return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound
    except OSError as err:
        raise _wrap(loc, "looking up", err) from err


def is_dir(uri: str | Location) -> bool:
    loc = resolve(uri)
    try:
        return loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory
    except OSError as err:
        raise _wrap(loc, "looking up", err) from err


def list_dir(uri: str | Location) -> list[str]:
    """Names directly under a folder (empty when it does not exist)."""
    loc = resolve(uri)
    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, allow_not_found=True))
    except OSError as err:
        raise _wrap(loc, "listing", err) from err
    return sorted(posixpath.basename(i.path) for i in infos)


def delete(uri: str | Location) -> None:
    """Remove a file or object, or a folder and everything under it; nothing to do if it is not there."""
    loc = resolve(uri)
    try:
        kind = loc.fs.get_file_info(loc.path).type
        if kind == pafs.FileType.Directory:
            loc.fs.delete_dir(loc.path)
        elif kind != pafs.FileType.NotFound:
            loc.fs.delete_file(loc.path)
    except OSError as err:
        raise _wrap(loc, "deleting", err) from err


def check_access(uri: str | Location, write: bool = True) -> Location:
    """Fail early, with one clear error naming `uri`, when storage is unreachable or forbidden.

    On S3 the bucket is checked with boto3 (missing bucket, bad credentials and an unreachable endpoint
    each get their own message, after retries for transient faults); with `write`, a small object is
    written and deleted so a read-only credential is caught before a cluster spends GPU time.
    """
    loc = resolve(uri)
    if loc.is_s3:
        _check_bucket(loc)
    elif write:
        try:
            Path(loc.path).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot create the folder {loc.uri}: {err}") from err
    if write:
        probe = loc.join(f".draw-service-probe-{uuid.uuid4().hex[:8]}")
        try:
            write_bytes(probe, b"ok")
            loc.fs.delete_file(probe.path)
        except (OSError, StorageError) as err:
            if loc.is_s3 and ("was refused" in str(err) or any(code in str(err) for code in _DENIED)):
                raise _refused(loc, "writing was refused") from err
            raise StorageError(f"cannot write to {loc.uri}: {err}") from err
    return loc


def boto3_client():
    import boto3
    from botocore.config import Config

    endpoint = s3_endpoint()
    # A session of its own: boto3's default one keeps the first credentials it found for the process.
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint.url, region_name=endpoint.region,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )


_DENIED = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden",
           "SIGNATURE_DOES_NOT_MATCH", "ACCESS_DENIED", "INVALID_ACCESS_KEY_ID")


def _refused(loc: Location, detail: str) -> StorageError:
    return StorageError(f"access to {loc.uri} was refused at {s3_endpoint()} ({detail}): check AWS_ACCESS_KEY_ID and "
                        f"AWS_SECRET_ACCESS_KEY and the bucket's permissions")


def _check_bucket(loc: Location) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    bucket, _, prefix = loc.path.partition("/")
    endpoint = s3_endpoint()
    try:
        # A signed listing: answers "no such bucket" and "bad credentials" apart, unlike an anonymous HEAD.
        boto3_client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except NoCredentialsError as err:
        raise StorageError(f"no S3 credentials for {loc.uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from err
    except EndpointConnectionError as err:
        raise StorageError(f"cannot reach the S3 endpoint {endpoint} for {loc.uri}: {err}") from err
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise StorageError(f"the bucket {bucket!r} of {loc.uri} does not exist at {endpoint}") from err
        if code in _DENIED:
            raise _refused(loc, code) from err
        raise StorageError(f"S3 refused {loc.uri} at {endpoint}: {err}") from err
    except BotoCoreError as err:
        raise StorageError(f"cannot use {loc.uri} at {endpoint}: {err}") from err
