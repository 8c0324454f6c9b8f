"""Task attachments and doc files through presigned URLs (issue 9; seed page 15, CONTRACT-NOTES §12), on both
backends: the embedded default (files under $PACA_DATA_DIR/files behind HMAC-signed, expiring URLs served by the
API) and a real S3-compatible server (moto, path-style, bucket created on start). Real bytes go up through the
presigned URLs (single PUT below 5 MiB, multipart above) and come back down through the download URLs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from conftest import (PacaServer, _teardown_server, create_database, err, free_port, no_content, ok, psql,
                      unique)
from test_2_support import P, items, rebuild_and_verify

MIB = 1024 * 1024


def moto_binary() -> str:
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        pytest.skip("moto is not installed in this Python environment (pip install 'moto[server]')")
    return str(exe)


@pytest.fixture(scope="module")
def moto():
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
    proc = subprocess.Popen([moto_binary(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("moto_server did not start")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(log.name)


@pytest.fixture(scope="module", params=["local", "s3"])
def fsrv(request):
    env = {"STORAGE_MAX_FILE_SIZE": str(20 * MIB)}
    if request.param == "s3":
        moto_url = request.getfixturevalue("moto")
        env.update(STORAGE_PROVIDER="minio", STORAGE_ENDPOINT=moto_url, STORAGE_BUCKET=unique("paca-"),
                   STORAGE_REGION="us-east-1", STORAGE_ACCESS_KEY_ID="testing", STORAGE_SECRET_ACCESS_KEY="testing",
                   STORAGE_USE_SSL="false")
    dbname, url = create_database()
    data_dir = tempfile.mkdtemp(prefix=f"paca-data-files-{request.param}-")
    srv = PacaServer(f"files-{request.param}", url, data_dir, extra_env=env)
    srv.backend = request.param
    srv.moto = env.get("STORAGE_ENDPOINT")
    srv.bucket = env.get("STORAGE_BUCKET")
    try:
        srv.start()
        yield srv
    finally:
        _teardown_server(srv, dbname)


@pytest.fixture(scope="module")
def ctx(fsrv):
    adm = fsrv.admin()
    p = ok(adm.post("/projects", json={"name": unique("Files ")}), 201)
    t = ok(adm.post(P(p["id"], "/tasks"), json={"title": "with files"}), 201)
    d = ok(adm.post(P(p["id"], "/docs"), json={"title": "with files"}), 201)
    return fsrv, adm, p["id"], t["id"], d["id"]


def events(srv, where="true") -> int:
    return int(psql(f"SELECT count(*) FROM events WHERE {where}", srv.database_url).strip())


def upload(adm, base: str, data: bytes, name="notes.txt", ctype="text/plain") -> dict:
    init = ok(adm.post(f"{base}/initiate-upload", json={"file_name": name, "content_type": ctype,
                                                         "file_size": len(data)}), 201)
    body = {"file_id": init["file_id"]}
    if init["is_multipart"]:
        mp = init["multipart"]
        parts, offset = [], 0
        for part in mp["parts"]:
            size = part.get("size") or mp["part_size"]
            chunk = data[offset:offset + size]
            offset += len(chunk)
            r = requests.put(part["upload_url"], data=chunk, timeout=60)
            assert r.status_code == 200, r.text[:500]
            parts.append({"part_number": part["part_number"], "etag": r.headers["ETag"]})
        assert offset == len(data)
        body.update(upload_id=mp["upload_id"], parts=parts)
    else:
        r = requests.put(init["upload_url"], data=data, headers={"Content-Type": ctype}, timeout=60)
        assert r.status_code == 200, r.text[:500]
    return ok(adm.post(f"{base}/complete-upload", json=body), 201)


def fetch(adm, url_path: str, **params) -> requests.Response:
    url = ok(adm.get(url_path, params=params or None))["url"]
    return requests.get(url, timeout=60)


def test_task_attachment_round_trip(ctx):
    srv, adm, pid, tid, _ = ctx
    base = P(pid, f"/tasks/{tid}/attachments")
    data = b"hello attachments\n" + secrets.token_bytes(1000)
    before = events(srv, f"stream_id = '{tid}'")
    a = upload(adm, base, data, name="résumé v1.bin", ctype="application/octet-stream")
    assert a["task_id"] == tid and a["file_id"] and a["id"] and a.get("created_by")
    assert a["file"] == {"id": a["file_id"], "file_name": "résumé v1.bin", "content_type": "application/octet-stream",
                         "file_size": len(data), "created_at": a["file"]["created_at"]}
    assert events(srv, f"stream_id = '{tid}'") == before + 1
    assert [x["id"] for x in items(adm.get(base))] == [a["id"]]

    r = fetch(adm, f"{base}/{a['id']}/download-url", download="true")
    assert r.status_code == 200 and r.content == data
    assert "attachment" in r.headers.get("Content-Disposition", "")
    r = adm.get(f"{base}/{a['id']}/content")
    assert r.status_code == 200 and r.content == data

    acts = items(adm.get(P(pid, f"/tasks/{tid}/activities")))
    added = [x for x in acts if x["activity_type"] == "task.attachment.added"]
    assert added and added[-1]["content"] == {"file_name": "résumé v1.bin", "file_size": len(data)}

    no_content(adm.delete(f"{base}/{a['id']}"))
    assert items(adm.get(base)) == []
    err(adm.delete(f"{base}/{a['id']}"), 404, "ATTACHMENT_NOT_FOUND")
    err(adm.get(f"{base}/{a['id']}/download-url"), 404, "ATTACHMENT_NOT_FOUND")
    acts = items(adm.get(P(pid, f"/tasks/{tid}/activities")))
    assert acts[-1]["activity_type"] == "task.attachment.removed"
    assert acts[-1]["content"] == {"file_name": "résumé v1.bin", "file_size": len(data)}


def test_multipart_upload(ctx):
    srv, adm, pid, tid, _ = ctx
    base = P(pid, f"/tasks/{tid}/attachments")
    data = secrets.token_bytes(11 * MIB + 12345)
    init = ok(adm.post(f"{base}/initiate-upload", json={"file_name": "big.bin", "content_type": "application/zip",
                                                         "file_size": len(data)}), 201)
    assert init["is_multipart"] and not init.get("upload_url")
    assert [p["part_number"] for p in init["multipart"]["parts"]] == [1, 2, 3]
    err(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"]}), 400,
        "ATTACHMENT_MULTIPART_UPLOAD_ID_REQUIRED")
    err(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"], "upload_id": "other"}), 400,
        "ATTACHMENT_UPLOAD_ID_MISMATCH")
    err(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"],
                                                   "upload_id": init["multipart"]["upload_id"], "parts": []}), 400,
        "ATTACHMENT_MULTIPART_PARTS_EMPTY")
    a = upload(adm, base, data, name="big.bin", ctype="application/zip")
    assert a["file"]["file_size"] == len(data)
    r = fetch(adm, f"{base}/{a['id']}/download-url")
    assert r.status_code == 200 and len(r.content) == len(data) and r.content == data


def test_upload_errors_append_nothing(ctx):
    srv, adm, pid, tid, _ = ctx
    base = P(pid, f"/tasks/{tid}/attachments")
    before = events(srv)
    body = {"file_name": "a.txt", "content_type": "text/plain", "file_size": 3}
    for bad in ({**body, "file_name": ""}, {**body, "content_type": "nonsense"}, {**body, "file_size": 0},
                {k: v for k, v in body.items() if k != "file_name"}, {**body, "file_name": "a\nb"}):
        err(adm.post(f"{base}/initiate-upload", json=bad), 400, "ATTACHMENT_INVALID")
    err(adm.post(f"{base}/initiate-upload", json={**body, "file_size": 20 * MIB + 1}), 413, "ATTACHMENT_TOO_LARGE")
    err(adm.post(P(pid, f"/tasks/{uuid.uuid4()}/attachments/initiate-upload"), json=body), 404, "TASK_NOT_FOUND")
    # complete before anything was uploaded; with a wrong size; twice
    init = ok(adm.post(f"{base}/initiate-upload", json=body), 201)
    assert not init["is_multipart"] and init["upload_url"]
    err(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"]}), 400, "ATTACHMENT_INVALID")
    err(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"], "upload_id": "x"}), 400,
        "ATTACHMENT_NOT_MULTIPART_UPLOAD")
    err(adm.post(f"{base}/complete-upload", json={"file_id": str(uuid.uuid4())}), 404, "FILE_NOT_FOUND")
    err(adm.post(f"{base}/complete-upload", json={}), 400)
    r = requests.put(init["upload_url"], data=b"abcd", headers={"Content-Type": "text/plain"}, timeout=30)
    if srv.backend == "s3":  # S3 accepts any length on a presigned PUT: complete-upload catches it
        assert r.status_code == 200, r.text
        err(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"]}), 400, "ATTACHMENT_INVALID")
    else:  # the embedded store checks the declared size on the PUT itself
        err(r, 413, "ATTACHMENT_TOO_LARGE")
    assert events(srv) == before
    r = requests.put(init["upload_url"], data=b"abc", headers={"Content-Type": "text/plain"}, timeout=30)
    assert r.status_code == 200, r.text
    a = ok(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"]}), 201)
    assert events(srv) == before + 1
    err(adm.post(f"{base}/complete-upload", json={"file_id": init["file_id"]}), 409, "ATTACHMENT_UPLOAD_NOT_PENDING")
    # a file of this task is not a file of another task
    other = ok(adm.post(P(pid, "/tasks"), json={"title": "other"}), 201)
    err(adm.post(P(pid, f"/tasks/{other['id']}/attachments/complete-upload"), json={"file_id": init["file_id"]}),
        404, "FILE_NOT_FOUND")
    err(adm.get(P(pid, f"/tasks/{other['id']}/attachments/{a['id']}/download-url")), 404, "ATTACHMENT_NOT_FOUND")


def test_doc_files(ctx):
    srv, adm, pid, _, did = ctx
    base = P(pid, f"/docs/{did}/files")
    data = b"%PDF-1.4 pretend\n" * 100
    f = upload(adm, base, data, name="spec.pdf", ctype="application/pdf")
    assert f["document_id"] == did and f["id"] == f["file_id"] and f["file"]["file_name"] == "spec.pdf"
    r = fetch(adm, f"{base}/{f['file_id']}/download-url")
    assert r.status_code == 200 and r.content == data
    assert [x["file_id"] for x in items(adm.get(base))] == [f["file_id"]]
    feed = [a["activity_type"] for a in items(adm.get(P(pid, f"/docs/{did}/activities")))]
    assert "doc.file.added" in feed
    no_content(adm.delete(f"{base}/{f['file_id']}"))
    err(adm.delete(f"{base}/{f['file_id']}"), 404, "FILE_NOT_FOUND")
    assert items(adm.get(base)) == []
    types = psql(f"SELECT string_agg(event_type, ',' ORDER BY version) FROM events WHERE stream_id = '{did}'",
                 srv.database_url).strip()
    assert types.endswith("doc.file_added,doc.file_removed"), types


def test_signed_urls_refuse_tampering_and_expiry(ctx):
    srv, adm, pid, tid, _ = ctx
    if srv.backend != "local":
        pytest.skip("the S3 server checks its own signatures")
    base = P(pid, f"/tasks/{tid}/attachments")
    a = upload(adm, base, b"secret bytes", name="s.txt")
    url = ok(adm.get(f"{base}/{a['id']}/download-url"))["url"]
    assert url.startswith(srv.base + "/api/v1/storage/")
    assert requests.get(url, timeout=30).content == b"secret bytes"
    parts = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(parts.query))

    def with_query(**changes):
        nq = {**q, **changes}
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(nq), ""))

    for bad in (with_query(exp=str(int(q["exp"]) + 3600)), with_query(sig="0" * 64), with_query(op="put"),
                with_query(cd="inline; filename=x")):
        r = requests.get(bad, timeout=30)
        assert r.status_code == 403 and r.json()["error_code"] == "FORBIDDEN", r.text
    other_key = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path[:-4] + "0000", parts.query, ""))
    assert requests.get(other_key, timeout=30).status_code == 403
    assert requests.get(url.split("?")[0], timeout=30).status_code == 403
    # an upload URL cannot be used to overwrite with another type, or beyond its size
    init = ok(adm.post(f"{base}/initiate-upload", json={"file_name": "x.txt", "content_type": "text/plain",
                                                         "file_size": 5}), 201)
    assert requests.put(init["upload_url"], data=b"12345", headers={"Content-Type": "text/html"},
                        timeout=30).status_code == 403
    assert requests.put(init["upload_url"], data=b"123456", headers={"Content-Type": "text/plain"},
                        timeout=30).status_code == 413
    # a download URL does not upload
    assert requests.put(url, data=b"x", timeout=30).status_code == 403
    # expired: sign with a past expiry is impossible from outside; an expired URL fails like a forged one
    expired = with_query(exp=str(int(time.time()) - 10))
    assert requests.get(expired, timeout=30).status_code == 403
    # the bytes live under $PACA_DATA_DIR/files
    stored = list(Path(srv.data_dir, "files").rglob("*"))
    assert any(p.is_file() and p.read_bytes() == b"secret bytes" for p in stored)


def test_s3_bucket_holds_the_objects(ctx):
    srv, adm, pid, tid, _ = ctx
    if srv.backend != "s3":
        pytest.skip("S3 only")
    base = P(pid, f"/tasks/{tid}/attachments")
    a = upload(adm, base, b"in the bucket", name="b.txt")
    url = ok(adm.get(f"{base}/{a['id']}/download-url"))["url"]
    assert url.startswith(srv.moto + "/" + srv.bucket + "/"), url  # path-style, on the configured endpoint
    assert "X-Amz-Signature=" in url
    assert requests.get(url, timeout=30).content == b"in the bucket"
    # (moto does not check presigned signatures without IAM set up, so tampering is only tested locally)
    # deleting the attachment deletes the object
    key = urllib.parse.unquote(urllib.parse.urlsplit(url).path.split("/", 2)[2])
    no_content(adm.delete(f"{base}/{a['id']}"))
    # (moto does not check credentials, so an unsigned GET of a missing key is NoSuchKey, not AccessDenied)
    r = requests.get(f"{srv.moto}/{srv.bucket}/{key}", timeout=30)
    assert r.status_code == 404 and "NoSuchKey" in r.text, f"{r.status_code} {r.text[:300]}"


def test_permissions(ctx):
    srv, adm, pid, tid, did = ctx
    anon = srv.client()
    err(anon.post(P(pid, f"/tasks/{tid}/attachments/initiate-upload"),
                  json={"file_name": "a", "content_type": "text/plain", "file_size": 1}), 401)
    err(anon.get(P(pid, f"/tasks/{tid}/attachments")), 401, "AUTH_MISSING_TOKEN")


def test_zz_rebuild_reproduces_attachments(ctx):
    """Last in the module: a rebuild of the read models from the log gives the same attachments and feed."""
    srv, adm, pid, tid, did = ctx
    upload(adm, P(pid, f"/tasks/{tid}/attachments"), b"kept", name="kept.txt")
    upload(adm, P(pid, f"/docs/{did}/files"), b"kept too", name="kept2.txt")
    views = lambda c: (items(c.get(P(pid, f"/tasks/{tid}/attachments"))),  # noqa: E731
                       items(c.get(P(pid, f"/docs/{did}/files"))),
                       items(c.get(P(pid, f"/tasks/{tid}/activities"))))
    before = views(adm)
    rebuild_and_verify(srv)
    assert views(srv.admin()) == before
