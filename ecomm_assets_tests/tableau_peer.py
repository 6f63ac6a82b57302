"""A Tableau Server on 127.0.0.1 over HTTPS (a certificate made by trustme for this run) that
speaks what dagster-tableau and tableauserverclient send: server info, connected-app (JWT)
sign-in, the workbook and data source lists, the Metadata API's workbook query, "Update Data
Source Now" / "Update Workbook Now" (409093 while a refresh of the same content is queued), Query
Jobs, Query Job and Cancel Job (refused without the JWT scope tableau:jobs:update).

The site holds the Ecommerce Analytics workbook (four sheets and a dashboard over two published
extracts, an embedded extract and a live data source) and an unrelated Finance workbook. How a
refresh ends is set per data source or workbook id in ``outcomes``."""

import json
import re
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape, quoteattr

import jwt
import trustme

SITE, SITE_ID, USER_ID = "ecomm", "5173e0c4-0000-0000-0000-000000000001", "5173e0c4-0000-0000-0000-000000000002"
CLIENT_ID, SECRET_ID, SECRET_VALUE, USERNAME = "dagster-app", "secret-1", "connected-app-secret-value-of-32-bytes", "svc_dagster"
PROJECT = {"id": "0b0b0b0b-0000-0000-0000-000000000001", "name": "Analytics"}
TS = "2026-11-01T00:00:00Z"

ECOMM_WORKBOOK, FINANCE_WORKBOOK = "ec0ec0ec-0000-0000-0000-000000000001", "f1f1f1f1-0000-0000-0000-000000000002"
SALES_KPI, PRODUCT_KPI, TARGETS = (f"d5d5d5d5-0000-0000-0000-00000000000{i}" for i in (1, 2, 3))
NOTES = {"failed": "com.tableausoftware.nativeapi.dll.DataSourceException: [Databricks] table "
                   "ecomm_dw.dbt_prod_metric.agg_sales_kpi not found"}


def _table(schema: str, name: str) -> dict:
    return {"id": f"table-{name}", "name": name, "schema": schema, "fullName": f"[{schema}].[{name}]",
            "connectionType": "databricks", "isEmbedded": None, "tableType": "table", "projectName": None,
            "database": {"id": "db-ecomm-dw", "name": "ecomm_dw", "projectName": None}}


def _published(luid: str, name: str, has_extracts: bool, *tables: dict) -> dict:
    """An embedded data source that is a proxy of a published one, as the Metadata API shows it."""
    return {"id": f"proxy-{luid}", "name": name, "hasExtracts": False, "upstreamTables": [],
            "parentPublishedDatasources": [{"luid": luid, "id": f"md-{luid}", "name": name,
                                            "hasExtracts": has_extracts, "upstreamTables": list(tables)}]}


def _sheet(workbook: str, n: int, name: str, *sources: dict) -> dict:
    return {"luid": f"{workbook[:8]}-5eet-0000-0000-00000000000{n}", "id": f"md-sheet-{workbook[:8]}-{n}",
            "name": name, "createdAt": TS, "updatedAt": TS, "path": f"{workbook[:8]}/{name.replace(' ', '')}",
            "parentEmbeddedDatasources": list(sources)}


def site_content() -> dict:
    sales = _published(SALES_KPI, "Sales KPI", True, _table("dbt_prod_metric", "agg_sales_kpi"))
    products = _published(PRODUCT_KPI, "Product KPI", True, _table("dbt_prod_metric", "agg_product_kpi"))
    targets = _published(TARGETS, "Sales Targets", False, _table("finance", "sales_targets"))
    customers = {"id": "md-embedded-customer-kpi", "name": "Customer KPI", "hasExtracts": True,
                 "upstreamTables": [_table("dbt_prod_metric", "agg_customer_kpi")], "parentPublishedDatasources": []}
    sheets = [_sheet(ECOMM_WORKBOOK, 1, "Revenue", sales, targets), _sheet(ECOMM_WORKBOOK, 2, "AOV", sales),
              _sheet(ECOMM_WORKBOOK, 3, "Top Selling Categories", products),
              _sheet(ECOMM_WORKBOOK, 4, "Customer Acquisition", customers)]
    ecomm = {"luid": ECOMM_WORKBOOK, "name": "Ecommerce Analytics", "createdAt": TS, "updatedAt": TS,
             "uri": "sites/1/workbooks/1", "projectName": PROJECT["name"], "projectLuid": PROJECT["id"],
             "sheets": sheets,
             "dashboards": [{"luid": "dddddddd-dash-0000-0000-000000000001", "name": "Ecommerce Analytics",
                             "createdAt": TS, "updatedAt": TS, "path": "EcommerceAnalytics/EcommerceAnalytics",
                             "sheets": [{"luid": s["luid"], "id": s["id"]} for s in sheets]}]}
    finance = {**ecomm, "luid": FINANCE_WORKBOOK, "name": "Finance", "uri": "sites/1/workbooks/2",
               "sheets": [_sheet(FINANCE_WORKBOOK, 1, "Targets", targets)], "dashboards": []}
    return {"workbooks": {ECOMM_WORKBOOK: ecomm, FINANCE_WORKBOOK: finance},
            "datasources": {SALES_KPI: ("Sales KPI", True), PRODUCT_KPI: ("Product KPI", True),
                            TARGETS: ("Sales Targets", False)}}


def _xml(inner: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><tsResponse xmlns="http://tableau.com/api">{inner}'
            "</tsResponse>").encode()


def _error(code: str, summary: str, detail: str) -> bytes:
    return _xml(f'<error code="{code}"><summary>{escape(summary)}</summary><detail>{escape(detail)}</detail></error>')


def _attrs(**values) -> str:
    return "".join(f" {name}={quoteattr(str(value))}" for name, value in values.items())


class TableauPeer:
    """``outcomes``: target id -> "success" | "failed" | "never" (a job that never finishes) |
    "bridge" (a Tableau Bridge job: finish code 0, "assigned", until it completes with code 3).
    ``refreshes``: the target ids refreshed, ``cancelled``: the jobs cancelled (by target id);
    ``queue(kind, target)`` queues a refresh as the site's schedule does; ``rate_limit(pattern)``
    answers the next request matching "METHOD path" with 429; ``hang(pattern)`` never answers the
    requests matching it; ``log``: every request as "METHOD path -> status"."""

    def __init__(self, tmp_path):
        self.content = site_content()
        self.outcomes: dict[str, str] = {}
        self.refreshes: list[str] = []
        self.cancelled: list[str] = []
        self.jobs: dict[str, dict] = {}
        self.tokens: dict[str, list[str]] = {}  # session token -> the scopes of its JWT
        self.log: list[str] = []
        self.rate_limited: list[str] = []
        self.hanging: list[str] = []
        self.stopped = threading.Event()
        ca = trustme.CA()
        self.ca_bundle = tmp_path / "tableau-peer-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(tls)
        peer = self

        class Handler(_Handler):
            tableau = peer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server_name = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def rate_limit(self, pattern: str) -> None:
        self.rate_limited.append(pattern)

    def hang(self, pattern: str) -> None:
        self.hanging.append(pattern)

    def queue(self, kind: str, target: str, ends_at_conflict: bool = False) -> str:
        """Queue a refresh of ``target`` (kind "datasource" or "workbook") outside the run, as the
        site's schedule does; ``ends_at_conflict``: it completes as Tableau refuses a duplicate."""
        job = _new_job(kind, target, self.outcomes.get(target, "success"))
        job["ends_at_conflict"] = ends_at_conflict
        self.jobs[job["id"]] = job
        return job["id"]

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


def _new_job(kind: str, target: str, outcome: str) -> dict:
    return {"id": str(uuid.uuid4()), "kind": kind, "target": target, "polls": 0, "outcome": outcome,
            "finished": False}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tableau: TableauPeer

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def _serve(self, method: str):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.line = f"{method} {url.path}"
        if any(re.fullmatch(p, self.line) for p in self.tableau.hanging):
            self.tableau.log.append(f"{self.line} -> no answer")
            self.tableau.stopped.wait()
            self.close_connection = True
            return
        if limited := [p for p in self.tableau.rate_limited if re.fullmatch(p, self.line)]:
            self.tableau.rate_limited.remove(limited[0])  # what Tableau Cloud sends over its limits: an HTML page
            return self._answer(429, b"<html><body>429 Too Many Requests</body></html>", "text/html",
                                {"Retry-After": "1"})
        status, payload, content_type = self._route(method, url.path, parse_qs(url.query), body)
        self._answer(status, payload, content_type)

    def _answer(self, status: int, payload: bytes, content_type: str, headers: dict | None = None):
        self.tableau.log.append(f"{self.line} -> {status}")
        self.send_response(status)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(payload)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _route(self, method: str, path: str, query: dict, body: bytes):
        xml = "application/xml;charset=utf-8"
        if method == "GET" and path.endswith("/serverInfo"):
            return 200, _xml("<serverInfo><productVersion build=\"20243.24.1211.0901\">2024.3.1</productVersion>"
                             "<restApiVersion>3.24</restApiVersion></serverInfo>"), xml
        if method == "POST" and path.endswith("/auth/signin"):
            return self._sign_in(body)
        if method == "POST" and path.endswith("/auth/signout"):
            self.tableau.tokens.pop(self.headers.get("X-Tableau-Auth"), None)
            return 204, b"", xml
        if self.headers.get("X-Tableau-Auth") not in self.tableau.tokens:
            return 401, _error("401002", "Unauthorized Access", "Invalid authentication credentials."), xml
        if path == "/api/metadata/graphql":
            luid = json.loads(body)["variables"]["luid"]
            workbook = self.tableau.content["workbooks"].get(luid)
            return 200, json.dumps({"data": {"workbooks": [workbook] if workbook else []}}).encode(), "application/json"
        site = re.fullmatch(rf"/api/[\d.]+/sites/{SITE_ID}(/.*)", path)
        if not site:
            return 404, _error("404000", "Resource Not Found", path), xml
        tail = site.group(1)
        if method == "GET" and tail == "/workbooks":
            return 200, self._page("workbook", [
                f"<workbook{_attrs(id=luid, name=w['name'], contentUrl=w['name'].replace(' ', ''), createdAt=TS, updatedAt=TS)}>"
                f"<project{_attrs(**PROJECT)}/><owner{_attrs(id=USER_ID)}/></workbook>"
                for luid, w in self.tableau.content["workbooks"].items()], query), xml
        if method == "GET" and tail == "/datasources":
            return 200, self._page("datasource", [self._datasource(luid) for luid in self.tableau.content["datasources"]],
                                   query), xml
        if match := re.fullmatch(r"/datasources/([^/]+)", tail):
            return 200, _xml(self._datasource(match.group(1))), xml
        if method == "POST" and (match := re.fullmatch(r"/(datasources|workbooks)/([^/]+)/refresh", tail)):
            return self._start_job(match.group(1)[:-1], match.group(2))
        if method == "GET" and tail == "/jobs":
            return 200, self._page("backgroundJob", self._background_jobs(query), query), xml
        if match := re.fullmatch(r"/jobs/([^/]+)", tail):
            return self._job(method, self.tableau.jobs[match.group(1)])
        return 404, _error("404000", "Resource Not Found", f"{method} {tail}"), xml

    def _sign_in(self, body: bytes):
        credentials = ET.fromstring(body).find("credentials")
        token = credentials.get("jwt")
        try:  # a connected app's JWT: HS256 with the secret value, kid = secret id, iss = client id
            claims = jwt.decode(token, SECRET_VALUE, algorithms=["HS256"], audience="tableau")
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            return 401, _error("401001", "Signin Error", str(error)), "application/xml"
        if (header.get("kid"), claims.get("iss"), claims.get("sub"), credentials.find("site").get("contentUrl")) != (
                SECRET_ID, CLIENT_ID, USERNAME, SITE):
            return 401, _error("401001", "Signin Error", "unknown connected app, user or site"), "application/xml"
        session = uuid.uuid4().hex
        self.tableau.tokens[session] = claims.get("scp", [])
        return 200, _xml(f"<credentials{_attrs(token=session)}><site{_attrs(id=SITE_ID, contentUrl=SITE)}/>"
                         f"<user{_attrs(id=USER_ID)}/></credentials>"), "application/xml"

    def _page(self, tag: str, items: list[str], query: dict) -> bytes:
        number, size = int(query.get("pageNumber", ["1"])[0]), int(query.get("pageSize", ["100"])[0])
        return _xml(f"<pagination{_attrs(pageNumber=number, pageSize=size, totalAvailable=len(items))}/>"
                    f"<{tag}s>{''.join(items[(number - 1) * size:number * size])}</{tag}s>")

    def _datasource(self, luid: str) -> str:
        name, has_extracts = self.tableau.content["datasources"][luid]
        attrs = _attrs(id=luid, name=name, contentUrl=name.replace(' ', ''), type='databricks', createdAt=TS,
                       updatedAt=TS, hasExtracts=str(has_extracts).lower())
        return (f"<datasource{attrs}>"
                f"<project{_attrs(**PROJECT)}/><owner{_attrs(id=USER_ID)}/></datasource>")

    def _start_job(self, kind: str, target: str):
        self.tableau.refreshes.append(target)
        if queued := [job for job in self.tableau.jobs.values() if job["target"] == target and not job["finished"]]:
            if queued[0].get("ends_at_conflict"):
                queued[0]["finished"] = True
            content = self.tableau.content
            name = content["datasources"][target][0] if kind == "datasource" else content["workbooks"][target]["name"]
            return 409, _error("409093", "Resource Conflict",
                               f"Job for '{name}' is already queued. Not queuing a duplicate."), "application/xml"
        job = _new_job(kind, target, self.tableau.outcomes.get(target, "success"))
        self.tableau.jobs[job["id"]] = job
        return 202, _xml(f"<job{_attrs(id=job['id'], mode='Asynchronous', type='RefreshExtract', createdAt=TS)}>"
                         f"<extractRefreshJob><{kind}{_attrs(id=target)}/></extractRefreshJob></job>"), "application/xml"

    def _background_jobs(self, query: dict) -> list[str]:
        """Query Jobs: the site's jobs, filtered on ``status:eq:...``."""
        filters = dict(f.split(":eq:") for f in query.get("filter", [""])[0].split(",") if f)
        statuses = {job["id"]: ({"success": "Success", "bridge": "Success", "failed": "Failed",
                                 "cancelled": "Cancelled"}[job["outcome"]] if job["finished"]
                                else "InProgress" if job["polls"] else "Pending")
                    for job in self.tableau.jobs.values()}
        return [f"<backgroundJob{_attrs(id=id_, status=status, createdAt=TS, priority=50, jobType='refresh_extracts')}/>"
                for id_, status in statuses.items() if filters.get("status", status) == status]

    def _job(self, method: str, job: dict):
        if method == "PUT":  # Cancel Job
            if "tableau:jobs:update" not in self.tableau.tokens[self.headers.get("X-Tableau-Auth")]:
                # Cancel Job's documented refusal (403032 Update forbidden), for a JWT without the scope
                return 403, _error("403032", "Update forbidden", "The session's JWT has no scope "
                                   "tableau:jobs:update: it cannot cancel jobs."), "application/xml"
            self.tableau.cancelled.append(job["target"])
            job["outcome"] = "cancelled"
            return 200, b"", "application/xml"
        job["polls"] += 1
        if job["outcome"] == "bridge":  # finish code 0 (assigned) on the first polls, then completed: 3
            job["finished"] = job["polls"] > 3
            done = _attrs(completedAt=TS, finishCode=3) if job["finished"] else _attrs(finishCode=0)
        else:
            job["finished"] = job["finished"] or (job["polls"] > 1 and job["outcome"] != "never")
            code = {"success": 0, "failed": 1, "cancelled": 2}.get(job["outcome"])
            done = _attrs(completedAt=TS, finishCode=code) if job["finished"] else ""
        finished = job["finished"]
        notes = f"<notes>{escape(NOTES[job['outcome']])}</notes>" if finished and job["outcome"] in NOTES else ""
        return 200, _xml(f"<job{_attrs(id=job['id'], mode='Asynchronous', type='RefreshExtract', createdAt=TS)}{done}>"
                         f"<extractRefreshJob>{notes}<{job['kind']}{_attrs(id=job['target'])}/></extractRefreshJob></job>"), \
            "application/xml"
