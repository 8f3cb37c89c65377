"""The Files API routes: upload (streamed to disk), list, retrieve, download, delete.

``POST /v1/files`` takes multipart fields ``file`` (required), ``purpose`` (default
``fine-tune``, as upstream), ``visibility`` and ``expiry`` (accepted, not enforced).
``GET /v1/files/{file_id}/content`` sends the bytes as ``application/octet-stream``,
the type the SDK's ``files.download_async`` insists on.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import BodyPartReader, web

from batchrunner.mock.control import guarded, invalid, json_reply, not_found, paging, respond
from batchrunner.mock.replies import Reply, error_reply, missing, validation_reply
from batchrunner.mock.stats import Stats
from batchrunner.mock.store import PURPOSES, FileStore, LineCounter, StoredFile, now_s

# Big enough that a 1M-line upload is a few thousand writes, small enough to be no memory.
_CHUNK = 256 * 1024


class FilesApi:
    """Handlers of the Files API over one :class:`FileStore`."""

    __slots__ = ("store",)

    def __init__(self, store: FileStore) -> None:
        self.store = store

    def register(self, router: web.UrlDispatcher, stats: Stats, require_key: str | None) -> None:
        """Add the routes, each behind the key check."""
        one = "/v1/files/{file_id}"
        for method, path, handler in (
            ("POST", "/v1/files", self.upload),
            ("GET", "/v1/files", self.list),
            ("GET", one, self.retrieve),
            ("DELETE", one, self.delete),
            ("GET", one + "/content", self.download),
        ):
            router.add_route(method, path, guarded(handler, path, stats, require_key))

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """Stream the ``file`` part to disk, then check the other fields."""
        if not request.content_type.startswith("multipart/"):
            return respond(validation_reply([missing("file")]))
        try:
            saved, fields = await self._read_form(request)
        except ValueError as exc:  # a malformed multipart body
            return respond(error_reply(400, f"mock: malformed multipart body: {exc}"))
        if saved is None:
            return respond(validation_reply([missing("file")]))
        purpose = fields.get("purpose", "fine-tune")
        if purpose not in PURPOSES:
            saved.path.unlink(missing_ok=True)
            return respond(invalid("purpose", f"Input should be one of {PURPOSES}", purpose))
        sample_type = "batch_request" if purpose == "batch" else saved.sample_type
        saved = replace(saved, purpose=purpose, sample_type=sample_type)
        self.store.add(saved)
        return respond(json_reply(saved.to_json()))

    async def _read_form(self, request: web.Request) -> tuple[StoredFile | None, dict[str, str]]:
        """The saved ``file`` part and the other fields; a failure half-way leaves no file."""
        fields: dict[str, str] = {}
        saved: StoredFile | None = None
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue  # a nested multipart: nothing the API defines
                if part.name != "file":
                    fields[part.name or ""] = await part.text()
                elif saved is None:
                    saved = await self._save(part)
                else:
                    await part.release()  # one file per upload, as upstream
        except BaseException:  # a client that hangs up mid-upload included
            if saved is not None:
                saved.path.unlink(missing_ok=True)
            raise
        return saved, fields

    async def _save(self, part: BodyPartReader) -> StoredFile:
        file_id, path = self.store.new_path()
        counter = LineCounter()
        size = 0
        try:
            with open(path, "wb") as out:
                while chunk := await part.read_chunk(_CHUNK):
                    out.write(chunk)
                    counter.feed(chunk)
                    size += len(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        name = part.filename or "upload.jsonl"
        return StoredFile(
            id=file_id,
            path=path,
            filename=name,
            purpose="fine-tune",  # set from the purpose field once the form is read
            sample_type="instruct",
            source="upload",
            size=size,
            num_lines=counter.close(),
            created_at=now_s(),
            mimetype=part.headers.get("Content-Type"),
        )

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``ListFilesResponse``: filters ``purpose``, ``sample_type``, ``source``, ``search``."""
        pages = paging(request)
        if isinstance(pages, Reply):
            return respond(pages)
        page, size = pages
        query = request.query
        chosen = [
            f
            for f in self.store.all()
            if query.get("purpose", f.purpose) == f.purpose
            and f.sample_type in query.getall("sample_type", [f.sample_type])
            and f.source in query.getall("source", [f.source])
            and query.get("search", "") in f.filename
        ]
        data = [f.to_json() for f in chosen[page * size : (page + 1) * size]]
        return respond(json_reply({"data": data, "object": "list", "total": len(chosen)}))

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        """``GetFileResponse`` of one file."""
        stored = self._lookup(request)
        if stored is None:
            return respond(not_found("File", request.match_info["file_id"]))
        return respond(json_reply(stored.to_json(with_deleted=True)))

    async def download(self, request: web.Request) -> web.StreamResponse:
        """The file's bytes, streamed from disk as ``application/octet-stream``."""
        stored = self._lookup(request)
        if stored is None:
            return respond(not_found("File", request.match_info["file_id"]))
        filename = stored.filename.replace('"', "")
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
        return web.FileResponse(stored.path, headers=headers)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        """``DeleteFileResponse``; the bytes are removed at once."""
        file_id = request.match_info["file_id"]
        if not self.store.delete(file_id):
            return respond(not_found("File", file_id))
        return respond(json_reply({"id": file_id, "object": "file", "deleted": True}))

    def _lookup(self, request: web.Request) -> StoredFile | None:
        return self.store.get(request.match_info["file_id"])
