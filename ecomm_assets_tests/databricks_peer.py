"""A loopback peer for databricks-sdk: a small HTTP server speaking the Pipelines API of one
workspace that holds one pipeline (its spec, updates, validate-only updates, events), the SQL
Statement Execution API of one warehouse, and the workspace's OAuth endpoints (machine-to-machine:
client credentials for a bearer token). It records every request so tests assert on the wire."""

import base64
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ecomm_assets.lakehouse.databricks_engine import DatabricksLakehouse

PIPELINE_ID = "8a1f3c2e-5b7d-4e9a-b0c1-d2e3f4a5b6c7"
WAREHOUSE_ID = "5f2a9e0c7b3d1a44"
LANDING_ROOT = "s3://ecomm-landing/ecomm_db_extracts/daily_extracts"
TOKEN = "dapi0123456789abcdef-secret"
CLIENT_ID = "6f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"  # a service principal's application id
CLIENT_SECRET = "dose0123456789abcdef-secret"
# What the API answers a start while an update is active: the answer has had more than one form.
BUSY_ANSWERS = {
    "conflict": (409, {"error_code": "RESOURCE_CONFLICT",
                       "message": "Cannot start a new update: pipeline '{pipeline}' already has an active "
                                  "update {update}."}),
    "invalid_state": (400, {"error_code": "INVALID_STATE",
                            "message": "Pipeline '{pipeline}' is in state RUNNING: an update is in progress."}),
}
FINAL = {"COMPLETED", "FAILED", "CANCELED"}
LIST_UPDATES_PAGE = 25  # ListUpdates answers the 25 most recent updates, the newest first
PAGE_CAP = 4  # the server returns fewer events than max_results, as the API may


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(update_id: str | None, event_type: str, level: str = "INFO", message: str = "", **fields) -> dict:
    """An event as GET /api/2.0/pipelines/{id}/events returns it (timestamp set when logged)."""
    origin = {"pipeline_id": PIPELINE_ID, "pipeline_name": "batch_ecomm_pipeline", "cloud": "AWS"}
    if update_id:
        origin["update_id"] = update_id
    origin.update(fields.pop("origin", {}))
    return {"id": str(uuid.uuid4()), "event_type": event_type, "level": level, "message": message,
            "maturity_level": "STABLE", "origin": origin, **fields}


def flow_progress(update_id: str, dataset: str, status: str, **progress) -> dict:
    return event(update_id, "flow_progress", message=f"Flow '{dataset}' is {status}.",
                 origin={"flow_name": dataset, "dataset_name": dataset},
                 details={"flow_progress": {"status": status, **progress}})


def _without_data_quality(logged: dict) -> dict:
    progress = logged.get("details", {}).get("flow_progress")
    if not progress or "data_quality" not in progress:
        return logged
    kept = {k: v for k, v in progress.items() if k != "data_quality"}
    return {**logged, "details": {**logged["details"], "flow_progress": kept}}


def data_quality(dataset: str, dropped: int, *checks: tuple[str, int, int]) -> dict:
    return {"dropped_records": dropped, "expectations": [
        {"name": name, "dataset": dataset, "passed_records": passed, "failed_records": failed}
        for name, passed, failed in checks]}


def analysis_failure(update_id: str, errors: list[tuple[str, str]]) -> list[dict]:
    """What an update, validate-only or not, logs when the pipeline's code does not resolve: an
    ERROR event per flow that fails analysis, then the update's own failure."""
    failed = [{**event(update_id, "flow_progress", "ERROR", f"Failed to resolve flow: '{dataset}'.",
                       origin={"flow_name": dataset, "dataset_name": dataset},
                       details={"flow_progress": {"status": "FAILED"}}),
               "error": {"fatal": True, "exceptions": [
                   {"class_name": "org.apache.spark.sql.catalyst.ExtendedAnalysisException", "message": message}]}}
              for dataset, message in errors]
    return failed + [{**event(update_id, "update_progress", "ERROR", f"Update {update_id[:6]} is FAILED.",
                              details={"update_progress": {"state": "FAILED"}}),
                      "error": {"fatal": True, "exceptions": [
                          {"class_name": "com.databricks.pipelines.common.errors.DLTAnalysisException",
                           "message": "Failed to resolve flows in the pipeline."}]}}]


class Update:
    """A scripted update: the states it reports in turn (the last one stays), and the events the
    pipeline logs for it, given the update id."""

    def __init__(self, states: list[str], events=lambda update_id: []):
        self.update_id = str(uuid.uuid4())
        self.states = list(states)
        self.events = events(self.update_id)
        self.creation_time = None
        self.request = {}

    @property
    def state(self) -> str:
        return self.states[0]

    def report(self) -> str:
        """The current state; the next report moves on to the following one."""
        state = self.states[0]
        if len(self.states) > 1:
            self.states.pop(0)
        return state


class PipelinesServer:
    """The Pipelines API of one workspace holding one pipeline, on 127.0.0.1."""

    def __init__(self):
        self.requests: list[dict] = []
        self.updates: dict[str, Update] = {}
        self.queued: list[Update] = []  # what the next POST .../updates creates
        self.log: list[dict] = []  # the pipeline's event log
        # What the warehouse answers to a statement: its rows, values as strings (none by default).
        self.answer_sql = lambda statement: []
        self.statements: dict[str, dict] = {}
        self._pages: dict[str, list[dict]] = {}
        self.busy_answer = "conflict"  # a key of BUSY_ANSWERS
        # The events endpoint may leave events out: False drops the data_quality of every event.
        self.events_carry_data_quality = True
        self.oauth_tokens: set[str] = set()  # bearer tokens issued to CLIENT_ID
        self.refuse_start: tuple[int, dict] | None = None  # an error answer to every start
        # The deployed pipeline's configuration (the bundle's, landing_root set at deploy).
        self.configuration = {"landing_root": LANDING_ROOT, "spark.sql.session.timeZone": "UTC"}
        # What analysis of the deployed code finds, (dataset, message) each: a validate-only update
        # fails with them, and so does every update, before any flow runs.
        self.analysis_errors: list[tuple[str, str]] = []
        # Start requests (bodies) accepted once each, whose answer is then lost: the connection drops.
        self.lose_answer_to: list[dict] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self._http.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._http.shutdown()
        self._http.server_close()

    def engine(self, **settings) -> DatabricksLakehouse:
        return DatabricksLakehouse(**{"host": self.host, "token": TOKEN, "pipeline_id": PIPELINE_ID,
                                      "warehouse_id": WAREHOUSE_ID, "landing_root": LANDING_ROOT,
                                      "catalog": "ecomm_dw", "poll_interval_seconds": 0.01, **settings})

    def add_running_update(self, states: list[str]) -> Update:
        """An update some other run started earlier, still active."""
        update = Update(states)
        update.creation_time = int(time.time() * 1000) - 60_000
        self.updates[update.update_id] = update
        return update

    def calls(self, method: str, pattern: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and re.fullmatch(pattern, r["path"])]

    def _active(self) -> Update | None:
        return next((u for u in self.updates.values() if u.state not in FINAL), None)

    # --- endpoints -------------------------------------------------------------------------------

    def start_update(self, body: dict) -> tuple[int, dict]:
        if self.refuse_start:
            return self.refuse_start
        if active := self._active():
            status, answer = BUSY_ANSWERS[self.busy_answer]
            return status, {**answer, "message": answer["message"].format(pipeline=PIPELINE_ID,
                                                                          update=active.update_id)}
        if self.analysis_errors:
            update = Update(["INITIALIZING", "FAILED"], lambda update_id: analysis_failure(update_id,
                                                                                          self.analysis_errors))
        elif body.get("validate_only"):
            update = Update(["INITIALIZING", "COMPLETED"])
        else:
            update = self.queued.pop(0)
        update.creation_time, update.request = int(time.time() * 1000), body
        # as Databricks does: no (or an empty) selection is an update of the whole pipeline
        update.whole_pipeline = not (body.get("refresh_selection") or body.get("full_refresh_selection"))
        self.updates[update.update_id] = update
        for offset, logged in enumerate(update.events, start=1):
            self.log.append({"timestamp": iso(update.creation_time + offset), **logged})
        return 200, {"update_id": update.update_id}

    def get_update(self, update_id: str) -> tuple[int, dict]:
        update = self.updates[update_id]
        return 200, {"update": {**self._update_info(update), "config": self._spec()}}

    def list_updates(self) -> tuple[int, dict]:
        """The most recent updates, the newest first, without their config."""
        newest = sorted(self.updates.values(), key=lambda u: -u.creation_time)[:LIST_UPDATES_PAGE]
        return 200, {"updates": [self._update_info(u) for u in newest]}

    def _update_info(self, update: Update) -> dict:
        return {"pipeline_id": PIPELINE_ID, "update_id": update.update_id, "state": update.report(),
                "creation_time": update.creation_time, "cause": "API_CALL", **update.request}

    def _spec(self) -> dict:
        return {"id": PIPELINE_ID, "name": "batch_ecomm_pipeline", "catalog": "ecomm_dw", "schema": "bronze",
                "serverless": True, "continuous": False, "channel": "CURRENT", "configuration": self.configuration}

    def get_pipeline(self) -> tuple[int, dict]:
        latest = [{"update_id": u.update_id, "state": u.report(), "creation_time": iso(u.creation_time)}
                  for u in sorted(self.updates.values(), key=lambda u: -u.creation_time)]
        busy = any(u["state"] not in FINAL for u in latest)
        return 200, {"pipeline_id": PIPELINE_ID, "name": "batch_ecomm_pipeline", "spec": self._spec(),
                     "state": "RUNNING" if busy else "IDLE", "latest_updates": latest}

    def stop(self) -> tuple[int, dict]:
        if active := self._active():
            active.states = ["CANCELED"]
        return 200, {}

    def events(self, query: dict) -> tuple[int, dict]:
        """Newest first; filters as documented (level, timestamp); a page token excludes every other
        parameter but max_results."""
        size = min(int(query.get("max_results", 25)), PAGE_CAP)
        if "page_token" in query:
            if set(query) - {"page_token", "max_results"}:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE",
                             "message": "page_token is mutually exclusive with all fields but max_results"}
            matching = self._pages.pop(query["page_token"])
        else:
            matching = sorted(self.log, key=lambda e: e["timestamp"], reverse=True)
            for clause in filter(None, re.split(r"\s+AND\s+", query.get("filter", ""))):
                if m := re.fullmatch(r"timestamp\s*>=\s*'([^']+)'", clause):
                    matching = [e for e in matching if e["timestamp"] >= m[1]]
                elif m := re.fullmatch(r"level\s*=\s*'(\w+)'", clause):
                    matching = [e for e in matching if e["level"] == m[1]]
                else:
                    return 400, {"error_code": "INVALID_PARAMETER_VALUE",
                                 "message": f"Unsupported filter: {clause}"}
        page, rest = matching[:size], matching[size:]
        if not self.events_carry_data_quality:
            page = [_without_data_quality(e) for e in page]
        answer = {"events": page}
        if rest:
            token = uuid.uuid4().hex
            self._pages[token] = rest
            answer["next_page_token"] = token
        return 200, answer

    def execute_statement(self, body: dict) -> tuple[int, dict]:
        """Accepted and still PENDING on the first answer, as a busy warehouse answers; the rows come
        two per chunk, so that a reader must follow next_chunk_index."""
        if body.get("warehouse_id") != WAREHOUSE_ID:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No such warehouse."}
        rows = self.answer_sql(body["statement"])
        statement_id = str(uuid.uuid4())
        self.statements[statement_id] = {"chunks": [rows[i:i + 2] for i in range(0, len(rows), 2)] or [[]]}
        return 200, {"statement_id": statement_id, "status": {"state": "PENDING"}}

    def get_statement(self, statement_id: str) -> tuple[int, dict]:
        chunks = self.statements[statement_id]["chunks"]
        return 200, {"statement_id": statement_id, "status": {"state": "SUCCEEDED"},
                     "manifest": {"format": "JSON_ARRAY", "total_chunk_count": len(chunks)},
                     "result": self._chunk(statement_id, 0)}

    def _chunk(self, statement_id: str, index: int) -> dict:
        chunks = self.statements[statement_id]["chunks"]
        chunk = {"chunk_index": index, "row_offset": 2 * index, "data_array": chunks[index]}
        if index + 1 < len(chunks):
            chunk["next_chunk_index"] = index + 1
        return chunk

    def issue_token(self, authorization: str, form: dict) -> tuple[int, dict]:
        """The client-credentials grant, the client authenticated by HTTP Basic."""
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if authorization != expected or form.get("grant_type") != "client_credentials":
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}
        token = f"eyJ-oauth-{uuid.uuid4().hex}"
        self.oauth_tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                     "scope": form.get("scope", "all-apis")}

    def _authorized(self, authorization: str) -> bool:
        return authorization == f"Bearer {TOKEN}" or authorization.removeprefix("Bearer ") in self.oauth_tokens

    def _route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        base = f"/api/2.0/pipelines/{PIPELINE_ID}"
        if method == "GET" and path == "/.well-known/databricks-config":
            return 200, {"workspace_id": "1234567890123456", "oidc_endpoint": f"{self.host}/oidc"}
        if method == "GET" and path == "/oidc/.well-known/oauth-authorization-server":
            return 200, {"issuer": f"{self.host}/oidc", "token_endpoint": f"{self.host}/oidc/v1/token",
                         "authorization_endpoint": f"{self.host}/oidc/v1/authorize"}
        if method == "POST" and path == f"{base}/updates":
            return self.start_update(body)
        if method == "GET" and path == f"{base}/updates":
            return self.list_updates()
        if method == "GET" and (m := re.fullmatch(rf"{base}/updates/([\w-]+)", path)):
            return self.get_update(m[1])
        if method == "GET" and path == base:
            return self.get_pipeline()
        if method == "POST" and path == f"{base}/stop":
            return self.stop()
        if method == "GET" and path == f"{base}/events":
            return self.events(query)
        if method == "POST" and path == "/api/2.0/sql/statements":
            return self.execute_statement(body)
        if method == "GET" and (m := re.fullmatch(r"/api/2.0/sql/statements/([\w-]+)", path)):
            return self.get_statement(m[1])
        if method == "GET" and (m := re.fullmatch(r"/api/2.0/sql/statements/([\w-]+)/result/chunks/(\d+)", path)):
            return 200, self._chunk(m[1], int(m[2]))
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for '{method} {path}'"}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
                body = {k: v[-1] for k, v in parse_qs(raw).items()} if form else json.loads(raw or "{}")
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                authorization = self.headers.get("Authorization", "")
                with server._lock:
                    server.requests.append({"method": self.command, "path": url.path, "query": query,
                                            "body": body, "headers": dict(self.headers)})
                    if url.path.startswith("/api/") and not server._authorized(authorization):
                        status, answer = 401, {"error_code": "UNAUTHENTICATED",
                                               "message": "Invalid access token."}
                    elif self.command == "POST" and url.path == "/oidc/v1/token":
                        status, answer = server.issue_token(authorization, body)
                    else:
                        status, answer = server._route(self.command, url.path, query, body)
                    lost = (status == 200 and self.command == "POST" and body in server.lose_answer_to
                            and url.path == f"/api/2.0/pipelines/{PIPELINE_ID}/updates")
                    if lost:
                        server.lose_answer_to.remove(body)
                if lost:  # the update exists; the connection drops before its answer is sent
                    self.close_connection = True
                    return
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if url.path.startswith(f"/api/2.0/pipelines/{PIPELINE_ID}/updates/"):
                    server.on_poll_after_response()

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        return Handler

    def on_poll_after_response(self) -> None:
        """Hook run once a poll's answer is on the wire (the interrupt test sends its signal here)."""
