"""A real STAC API on 127.0.0.1 for the monitor tests: PostgreSQL + pgstac + stac-fastapi.

* a private PostgreSQL cluster (Debian's postgresql + postgis) initialised in a temporary
  folder and listening on a free local port; as root it runs as the ``postgres`` user
  (PostgreSQL refuses to run as root);
* ``pypgstac`` migrates the pgstac schema into it and loads collections and items;
* ``stac-fastapi-pgstac`` serves it under uvicorn in a subprocess;
* a small threaded HTTP file server with Range support serves the real GeoTIFFs the items'
  assets point to, and counts the requests (so a test can check that assets are read by
  range, not downloaded whole).

Everything is stopped and removed by :meth:`StacServer.close`.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def find_pg_bin() -> Path | None:
    """Folder of Debian's initdb / pg_ctl, newest version first (None when absent)."""
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def postgis_available(pg_bin: Path) -> bool:
    """True when the PostGIS extension is installed for this PostgreSQL version."""
    version = pg_bin.parent.name
    return any(Path(f"/usr/share/postgresql/{version}/extension").glob("postgis.control"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- static files with Range support ------------------------------------------------------


@dataclass
class RequestLog:
    """What the file server answered: (method, path, status, bytes sent)."""

    entries: list[tuple[str, str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, status: int, size: int) -> None:
        with self.lock:
            self.entries.append((method, path, status, size))

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


def _handler(root: Path, log: RequestLog) -> type[http.server.BaseHTTPRequestHandler]:
    class RangeHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _target(self) -> Path | None:
            rel = urllib.request.url2pathname(self.path.split("?", 1)[0]).lstrip("/")
            target = (root / rel).resolve()
            if root not in target.parents or not target.is_file():
                return None
            return target

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            target = self._target()
            if target is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                log.add(self.command, self.path, 404, 0)
                return
            size = target.stat().st_size
            start, end, status = 0, size - 1, 200
            header = self.headers.get("Range")
            if header and header.startswith("bytes="):
                first = header[6:].split(",")[0].strip()
                lo, _, hi = first.partition("-")
                if lo:
                    start = int(lo)
                    end = min(int(hi), size - 1) if hi else size - 1
                else:  # suffix range
                    start = max(0, size - int(hi))
                status = 206
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    log.add(self.command, self.path, 416, 0)
                    return
            length = end - start + 1
            self.send_response(status)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            sent = 0
            if body:
                with open(target, "rb") as fh:
                    fh.seek(start)
                    self.wfile.write(fh.read(length))
                sent = length
            log.add(self.command, self.path, status, sent)

    return RangeHandler


class FileServer:
    """A threaded HTTP server for one folder, with byte-range support."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.log = RequestLog()
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), _handler(self.root, self.log)
        )
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="stac-files", daemon=True
        )
        self.thread.start()

    def url(self, path: Path) -> str:
        return f"http://127.0.0.1:{self.port}/{path.resolve().relative_to(self.root).as_posix()}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --- PostgreSQL + pgstac + stac-fastapi -----------------------------------------------------


class StacServer:
    """PostgreSQL cluster + pgstac + stac-fastapi-pgstac (uvicorn) + file server."""

    def __init__(self, data_root: Path, workdir: Path | None = None) -> None:
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise RuntimeError("PostgreSQL not installed (run scripts/install_system_deps.sh)")
        if not postgis_available(pg_bin):
            raise RuntimeError(f"PostGIS for PostgreSQL {pg_bin.parent.name} not installed")
        self.pg_bin = pg_bin
        self.tmp = Path(tempfile.mkdtemp(prefix="geotl-stac-", dir=workdir))
        self.pgdata = self.tmp / "pgdata"
        self.pg_port = free_port()
        self.api_port = free_port()
        self.as_user: str | None = "postgres" if os.geteuid() == 0 else None
        self.api: subprocess.Popen[bytes] | None = None
        self.files: FileServer | None = None
        self._pg_started = False
        try:
            self._start_postgres()
            self._migrate()
            self.files = FileServer(data_root)
            self._start_api()
        except BaseException:
            self.close()
            raise

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _pg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(a) for a in args]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, timeout=120, cwd=self.tmp)

    def _start_postgres(self) -> None:
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            os.chmod(self.tmp, 0o755)
        self._pg(
            self.pg_bin / "initdb",
            "-D",
            str(self.pgdata),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = (
            f"-p {self.pg_port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40"
        )
        self._pg(
            self.pg_bin / "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.tmp / "pg.log"),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "start",
        )
        self._pg_started = True

    def _migrate(self) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        with PgstacDB(dsn=self.dsn) as db:
            Migrate(db).run_migration()

    def _start_api(self) -> None:
        env = {
            **os.environ,
            "PGUSER": "postgres",
            "PGPASSWORD": "unused",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.pg_port),
            "PGDATABASE": "postgres",
            "DB_MIN_CONN_SIZE": "1",
            "DB_MAX_CONN_SIZE": "4",
            "ENABLED_EXTENSIONS": "query,sort,fields,filter,pagination",
            "WEB_CONCURRENCY": "1",
        }
        self._api_log = open(self.tmp / "api.log", "wb")  # noqa: SIM115
        self.api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "stac_fastapi.pgstac.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=self._api_log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(
                    f"stac-fastapi exited: {(self.tmp / 'api.log').read_text()[-2000:]}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/_mgmt/ping", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.25)
        raise RuntimeError("stac-fastapi did not answer within 90 s")

    # --- loading ------------------------------------------------------------------------

    def load_collection(self, collection: dict[str, Any]) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            Loader(db).load_collections(iter([collection]), Methods.upsert)

    def load_items(self, items: Iterable[dict[str, Any]]) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            Loader(db).load_items(iter(list(items)), Methods.upsert)

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as resp:
            return json.loads(resp.read())

    # --- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        if self.api is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.api.pid, 15)
            try:
                self.api.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.api.pid, 9)
                self.api.wait(timeout=10)
            self.api = None
            self._api_log.close()
        if self.files is not None:
            self.files.close()
            self.files = None
        if self._pg_started:
            self._pg(
                self.pg_bin / "pg_ctl",
                "-D",
                str(self.pgdata),
                "-m",
                "immediate",
                "-w",
                "stop",
                check=False,
            )
            self._pg_started = False
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- items from GeoTIFFs ----------------------------------------------------------------------


def collection_json(collection_id: str, description: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": description,
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["1980-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


def item_json(
    collection_id: str,
    item_id: str,
    tif: Path,
    href: str,
    when: str,
    cloud_cover: float,
    asset_key: str = "image",
) -> dict[str, Any]:
    """A STAC item for one GeoTIFF: footprint from its bounds, one multi-band asset."""
    import rasterio
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping, shape

    with rasterio.open(tif) as ds:
        geom = transform_geom(ds.crs, "EPSG:4326", mapping(box(*ds.bounds)))
        epsg = ds.crs.to_epsg()
    bbox = list(shape(geom).bounds)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "id": item_id,
        "collection": collection_id,
        "geometry": geom,
        "bbox": bbox,
        "properties": {"datetime": when, "eo:cloud_cover": cloud_cover, "proj:epsg": epsg},
        "assets": {
            asset_key: {"href": href, "type": "image/tiff; application=geotiff", "roles": ["data"]}
        },
        "links": [],
    }
