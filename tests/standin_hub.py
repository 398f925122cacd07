"""TEST FIXTURE ONLY: a tiny in-memory stand-in for the Hugging Face Hub HTTP API on 127.0.0.1.

No server that accepts uploads can be installed offline, so the hub tests run the *real* `huggingface_hub`
client against this stand-in (via HF_ENDPOINT). It implements only the endpoints that huggingface_hub 2.x
calls for create_repo / create_branch / upload_folder / repo_info / list_repo_tree / snapshot_download
(the huggingface_hub client's protocol, checked against its actual requests), with the status codes and `X-Error-Code`
headers the client maps to its typed errors. Any other route answers 501 and is recorded in `unknown`, so a
test can assert that the client asked for nothing the stand-in does not model.

urrlkit's product code never imports or mentions this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

REPO = r"(?P<repo>[^/]+/[^/]+)"
REV = r"(?P<rev>[^/]+)"


def git_blob_oid(data: bytes) -> str:
    """The git blob id the Hub reports as a file's oid / ETag for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> full file snapshot
    messages: dict[str, str] = field(default_factory=dict)

    def commit(self, files: dict[str, bytes], message: str) -> str:
        sha = hashlib.sha1(f"{len(self.commits)}:{message}:{sorted(files)}".encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.messages[sha] = message
        return sha

    def resolve(self, rev: str) -> str | None:
        rev = unquote(rev)
        if rev in self.refs:
            return self.refs[rev]
        return rev if rev in self.commits else None


@dataclass
class Call:
    method: str
    path: str
    authorization: str | None


class StandinHub:
    """In-memory model repos behind a ThreadingHTTPServer. Use as a context manager or start()/stop()."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.calls: list[Call] = []
        self.unknown: list[str] = []
        self.commit_payloads: list[list[dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "stand-in hub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandinHub:
        hub = self

        class Handler(_Handler):
            standin = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="standin-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandinHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------------------------- test helpers
    def seed(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Create a repo directly (no client involved), e.g. a pickle-only one; returns the commit sha."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo())
            base = repo.commits.get(repo.refs.get(branch, ""), {})
            sha = repo.commit({**base, **files}, "seed")
            repo.refs[branch] = sha
            return sha

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        sha = repo.resolve(rev)
        assert sha is not None, f"{repo_id}@{rev}: no such revision"
        return repo.commits[sha]


class _Handler(BaseHTTPRequestHandler):
    standin: StandinHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output quiet

    # ------------------------------------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json", head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), headers, head=head)

    def _error(self, status: int, code: str, message: str, head: bool = False,
               headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message,
                                                **(headers or {})}, head=head)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _record(self) -> str:
        path = urlsplit(self.path).path
        with self.standin._lock:
            self.standin.calls.append(Call(self.command, path, self.headers.get("Authorization")))
        return path

    def _route(self, table: list[tuple[str, Any]], path: str) -> bool:
        for pattern, fn in table:
            m = re.fullmatch(pattern, path)
            if m:
                fn(**m.groupdict())
                return True
        with self.standin._lock:
            self.standin.unknown.append(f"{self.command} {path}")
        self._error(501, "NotImplemented", f"stand-in hub does not implement {self.command} {path}")
        return False

    def _repo(self, repo_id: str, head: bool = False) -> Repo | None:
        repo = self.standin.repos.get(unquote(repo_id))
        if repo is None or (repo.private and not self.headers.get("Authorization")):
            # The real Hub answers 401 (private) or 404 (missing) with RepoNotFound; the client treats
            # both alike.
            self._error(404, "RepoNotFound", "Repository not found", head=head)
            return None
        return repo

    def _rev(self, repo: Repo, rev: str, head: bool = False) -> str | None:
        sha = repo.resolve(rev)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}", head=head)
        return sha

    def _at(self, repo_id: str, rev: str, head: bool = False) -> tuple[Repo, str] | None:
        """The repo and the commit `rev` names, or None after answering 404 for whichever is missing."""
        repo = self._repo(repo_id, head)
        sha = None if repo is None else self._rev(repo, rev, head)
        return None if repo is None or sha is None else (repo, sha)

    # ------------------------------------------------------------------------------------------- verbs
    def do_GET(self) -> None:
        path = self._record()
        self._route([
            (rf"/api/models/{REPO}", lambda repo: self._info(repo, "main")),
            (rf"/api/models/{REPO}/revision/{REV}", self._info),
            (rf"/api/models/{REPO}/tree/{REV}(?:/(?P<sub>.*))?", self._tree),
            (rf"/{REPO}/resolve/{REV}/(?P<file>.+)", lambda repo, rev, file: self._resolve(repo, rev, file)),
        ], path)

    def do_HEAD(self) -> None:
        path = self._record()
        self._route([
            (rf"/{REPO}/resolve/{REV}/(?P<file>.+)",
             lambda repo, rev, file: self._resolve(repo, rev, file, head=True)),
        ], path)

    def do_POST(self) -> None:
        path = self._record()
        body = self._body()
        if path != "/api/validate-yaml" and not self.headers.get("Authorization"):
            # Like the Hub, every write needs a token.
            self._error(401, "Unauthorized", "Invalid username or password.")
            return
        self._route([
            (r"/api/repos/create", lambda: self._create(body)),
            (r"/api/validate-yaml", lambda: self._json(200, {"errors": [], "warnings": []})),
            (rf"/api/models/{REPO}/preupload/{REV}", lambda repo, rev: self._preupload(repo, rev, body)),
            (rf"/api/models/{REPO}/commit/{REV}", lambda repo, rev: self._commit(repo, rev, body)),
            (rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)",
             lambda repo, branch: self._branch(repo, branch, body)),
        ], path)

    # ------------------------------------------------------------------------------------------- endpoints
    def _create(self, body: bytes) -> None:
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") not in (None, "model"):
            self._error(400, "BadRequest", "stand-in hub only hosts model repos")
            return
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.standin.url}/{repo_id}"
        with self.standin._lock:
            if repo_id in self.standin.repos:
                self._json(409, {"error": "You already created this model repo", "url": url})
                return
            repo = Repo(private=payload.get("visibility") == "private" or bool(payload.get("private")))
            # Like the Hub, a new repo starts with one commit holding .gitattributes.
            repo.refs["main"] = repo.commit({".gitattributes": b"*.safetensors filter=lfs diff=lfs\n"},
                                            "initial commit")
            self.standin.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _info(self, repo: str, rev: str) -> None:
        if (found := self._at(repo, rev)) is None:
            return
        r, sha = found
        self._json(200, {"id": unquote(repo), "modelId": unquote(repo), "sha": sha, "private": r.private,
                         "siblings": [{"rfilename": p} for p in sorted(r.commits[sha])], "tags": []})

    def _tree(self, repo: str, rev: str, sub: str | None = None) -> None:
        if (found := self._at(repo, rev)) is None:
            return
        r, sha = found
        prefix = f"{unquote(sub).strip('/')}/" if sub else ""
        entries = [{"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": p}
                   for p, data in sorted(r.commits[sha].items()) if p.startswith(prefix)]
        self._json(200, entries)

    def _resolve(self, repo: str, rev: str, file: str, head: bool = False) -> None:
        if (found := self._at(repo, rev, head)) is None:
            return
        r, sha = found
        data = r.commits[sha].get(unquote(file))
        if data is None:
            self._error(404, "EntryNotFound", f"{unquote(file)} does not exist on {unquote(rev)}", head=head,
                        headers={"X-Repo-Commit": sha})
            return
        self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_oid(data)}"'},
                   content_type="application/octet-stream", head=head)

    def _preupload(self, repo: str, rev: str, body: bytes) -> None:
        if self._at(repo, rev) is None:
            return
        files = json.loads(body).get("files", [])
        # Every file goes inline ("regular"): the stand-in has no LFS/Xet storage to hand out.
        self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for f in files]})

    def _commit(self, repo: str, rev: str, body: bytes) -> None:
        if (found := self._at(repo, rev)) is None:
            return
        r, parent = found
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        with self.standin._lock:
            self.standin.commit_payloads.append(lines)
        files = dict(r.commits[parent])
        summary = "commit"
        for item in lines:
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", summary)
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                self._error(400, "BadRequest", f"stand-in hub cannot apply commit operation {key!r}")
                return
        with self.standin._lock:
            sha = r.commit(files, summary)
            r.refs[unquote(rev)] = sha
        self._json(200, {"commitUrl": f"{self.standin.url}/{unquote(repo)}/commit/{sha}", "commitOid": sha,
                         "success": True})

    def _branch(self, repo: str, branch: str, body: bytes) -> None:
        r = self._repo(repo)
        if r is None:
            return
        branch = unquote(branch)
        start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
        if branch in r.refs:
            self._error(409, "Conflict", f"Reference already exists: {branch}")
            return
        sha = self._rev(r, start)
        if sha is None:
            return
        r.refs[branch] = sha
        self._json(200, {})
