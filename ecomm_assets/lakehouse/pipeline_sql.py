"""Reads the DLT pipeline sources in ``dlt_notebooks/`` into table definitions.

The SQL files are the single source of truth for Bronze, Silver and Gold: their tables, queries,
comments and expectations. Everything Python knows about the lakehouse (asset keys, dependencies,
descriptions, column schemas, asset checks) comes from here.

sqlglot parses the Databricks queries but not the DLT header (``CREATE OR REFRESH ... (CONSTRAINT
name EXPECT (condition) ON VIOLATION ...) COMMENT '...' TBLPROPERTIES (...) AS``) nor the AUTO CDC
flows (``CREATE FLOW ... AS AUTO CDC INTO ...``), which are read by hand below.
"""

import hashlib
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from ecomm_assets import REPO_ROOT

# batch_ecomm_pipeline as the Asset Bundle deploys it: its libraries are the SQL files, in order.
PIPELINE_BUNDLE = REPO_ROOT / "dlt_notebooks" / "resources" / "batch_ecomm_pipeline.pipeline.yml"
DIALECT = "databricks"

# The pipeline setting that holds the landing zone's URI (ecomm_db_extracts/daily_extracts).
LANDING_ROOT = "${landing_root}"
# Columns Auto Loader adds next to a read_files() schema.
RESCUED_DATA = "_rescued_data"
FILE_METADATA = "_metadata"
# What every table that reads landed files keeps of _metadata: rows are counted per file, and a
# stream over such a table remembers which files it has read.
SOURCE_FILE = "_source_file"
# The columns AUTO CDC adds to an SCD type 2 target: the sequence at which a version began and ended.
START_AT, END_AT = "__START_AT", "__END_AT"
# The relation that stands for read_files() in the query of a table that reads landed files.
LANDED = "landed_files"
# The column in which a Silver table lists the rules a row breaks: if(<condition>, NULL, '<rule>'),
# one per rule, each counted by the expectation NOT array_contains(_failed_rules, '<rule>').
FAILED_RULES = "_failed_rules"

_HEADER = re.compile(
    r"CREATE\s+(?:OR\s+REFRESH\s+)?(?P<kind>STREAMING\s+TABLE|MATERIALIZED\s+VIEW|VIEW)\s+(?P<name>\w+\.\w+)\s*",
    re.IGNORECASE,
)
_FLOW = re.compile(
    r"CREATE\s+FLOW\s+(?P<flow>\w+)\s+AS\s+AUTO\s+CDC\s+INTO\s+(?P<target>\w+\.\w+)\s+"
    r"FROM\s+STREAM\s*\(\s*(?P<source>\w+\.\w+)\s*\)\s+"
    r"KEYS\s*\((?P<keys>[^)]*)\)\s+"
    r"(?:APPLY\s+AS\s+DELETE\s+WHEN\s+(?P<delete_when>.+?)\s+)?"
    r"SEQUENCE\s+BY\s+(?P<sequence_by>\w+)\s*"
    r"(?:COLUMNS\s+\*\s+EXCEPT\s*\((?P<except_columns>[^)]*)\)\s*)?"
    r"(?:STORED\s+AS\s+SCD\s+TYPE\s+(?P<scd_type>[12])\s*)?"
    r"(?:TRACK\s+HISTORY\s+ON\s*\((?P<track_history>[^)]*)\)\s*)?$",
    re.IGNORECASE | re.DOTALL,
)
_CONSTRAINT = re.compile(
    r"CONSTRAINT\s+(?P<name>\w+)\s+EXPECT\s*\((?P<condition>.*)\)"
    r"(?:\s+ON\s+VIOLATION\s+(?P<action>DROP\s+ROW|FAIL\s+UPDATE))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_COMMENT = re.compile(r"COMMENT\s+'(?P<comment>(?:[^']|'')*)'\s*", re.IGNORECASE)
_PROPERTIES = re.compile(r"TBLPROPERTIES\s*", re.IGNORECASE)
_PROPERTY = re.compile(r"\s*'(?P<key>[^']*)'\s*=\s*'(?P<value>[^']*)'\s*")
_AS = re.compile(r"AS\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Expectation:
    name: str
    condition: str  # Databricks SQL over the table's output columns
    action: str  # "warn", "drop" or "fail", as DLT's ON VIOLATION
    rule: str | None = None  # for a rule of _failed_rules: the condition a row must meet

    @property
    def description(self) -> str:
        if self.rule:
            return f"Rule {self.name}: a row must meet `{self.rule}`; the rows that do not are quarantined."
        return f"DLT expectation {self.name}: EXPECT ({self.condition}), on violation {self.action}."


@dataclass(frozen=True)
class ReadFiles:
    """What a table's read_files() call says: which landed files, read how."""
    glob: str  # relative to ${landing_root}, e.g. "orders/ingestion_date=*/orders.csv"
    options: dict[str, str] = field(hash=False)  # format, multiLine, allowOverwrites, ...
    schema: dict[str, str] = field(hash=False)  # the declared columns {name: type}, in file order

    @property
    def landing_table(self) -> str:
        """The landing asset (source table) whose files these are."""
        return self.glob.split("/", 1)[0]


@dataclass(frozen=True)
class AutoCdc:
    """The AUTO CDC flow that feeds a streaming table: the changes of ``source`` applied by key."""
    flow: str
    source: str  # the streaming table of changes, read as a stream
    keys: tuple[str, ...]
    delete_when: str | None  # a condition over the source's columns
    sequence_by: str  # a column of the source: the order the changes are applied in
    except_columns: tuple[str, ...]  # source columns the target leaves out
    scd_type: int  # 1: the latest version of each key; 2: every version, with START_AT and END_AT
    track_history: tuple[str, ...] | None  # SCD type 2: the columns whose change opens a new version


@dataclass(frozen=True)
class PipelineTable:
    name: str  # "<schema>.<table>", schema being the layer
    kind: str  # "streaming table", "materialized view" or "view"
    comment: str
    expectations: tuple[Expectation, ...]
    # The SELECT, parsed in the Databricks dialect, without DLT's STREAM keyword; where the SQL calls
    # read_files(), the query reads the relation LANDED instead, which an engine defines over the
    # files. None for a streaming table an AUTO CDC flow feeds.
    query: exp.Query | None
    columns: tuple[tuple[str, str], ...]  # (name, Databricks type) of the output
    key: str  # the first output column, which identifies a row (sampled when an expectation fails)
    upstream: tuple[str, ...]  # pipeline tables read
    read_files: ReadFiles | None  # for the tables that read landed files
    source_file: str
    streams: tuple[str, ...] = ()  # the pipeline tables the query reads as streams (new rows only)
    cdc: AutoCdc | None = None  # the AUTO CDC flow that feeds the table
    properties: dict[str, str] = field(default_factory=dict, hash=False)  # TBLPROPERTIES
    # What a column means, from the SQL comment on the select item that defines it (here or in the
    # table it comes from); source columns are described in schema.sql instead.
    column_descriptions: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def landing_table(self) -> str | None:
        """The landing asset (source table) whose files this table reads."""
        return self.read_files.landing_table if self.read_files else None

    @property
    def layer(self) -> str:
        return self.name.split(".")[0]

    @property
    def table(self) -> str:
        return self.name.split(".")[1]


def _split_statements(text: str) -> list[str]:
    """The statements of a file, split at semicolons by sqlglot's tokenizer (so none inside a
    string or a comment counts); each runs from its first token to its last, comments before it
    left out."""
    statements, start, end = [], None, None
    for token in [*sqlglot.tokenize(text, read=DIALECT), None]:
        if token is None or token.token_type == sqlglot.TokenType.SEMICOLON:
            if start is not None:
                statements.append(text[start:end + 1])
            start = None
        else:
            start, end = token.start if start is None else start, token.end
    return statements


def _parenthesised(text: str) -> tuple[str, str]:
    """Split ``(inner) rest`` at the parenthesis matching the first one."""
    depth, quote = 0, None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char == "'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[1:i], text[i + 1 :].lstrip()
    raise ValueError(f"unbalanced parentheses in: {text[:80]}...")


def _top_level_split(text: str) -> list[str]:
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char == "'":
            quote = char
        elif char in "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _parse_expectation(text: str, where: str) -> Expectation:
    match = _CONSTRAINT.match(text)
    if not match:
        raise ValueError(f"{where}: not a DLT expectation: {text!r}")
    action = (match["action"] or "warn").split()[0].lower()
    return Expectation(match["name"], " ".join(match["condition"].split()), action)


def _rules(query: exp.Query) -> dict[str, str]:
    """{rule: condition} of the rules the query evaluates into _failed_rules."""
    column = next((s for s in query.selects if s.alias_or_name == FAILED_RULES), None)
    if column is None:
        return {}
    return {rule.args["false"].name: " ".join(rule.this.sql(DIALECT).split()) for rule in column.find_all(exp.If)}


def _with_rules(expectations: tuple[Expectation, ...], query: exp.Query, where: str) -> tuple[Expectation, ...]:
    """Attach to each expectation that counts a rule of _failed_rules the rule's condition."""
    rules = _rules(query)
    for e in expectations:
        if e.name in rules and e.condition != f"NOT array_contains({FAILED_RULES}, '{e.name}')":
            raise ValueError(f"{where}: rule {e.name} needs CONSTRAINT {e.name} EXPECT "
                             f"(NOT array_contains({FAILED_RULES}, '{e.name}'))")
    return tuple(Expectation(e.name, e.condition, e.action, rules.get(e.name)) for e in expectations)


def _check_rules_counted(tables: dict[str, PipelineTable]) -> None:
    """Every rule a query evaluates into _failed_rules is counted by one expectation, of that table
    or of the AUTO CDC target it feeds; every expectation on _failed_rules counts a rule."""
    for table in tables.values():
        if table.query is None:
            continue
        rules = set(_rules(table.query))
        counting = [table, *(t for t in tables.values() if t.cdc and t.cdc.source == table.name)]
        counted = {e.name for t in counting for e in t.expectations if e.rule}
        if missing := sorted(rules - counted):
            raise ValueError(f"{table.source_file}: {table.name}: rule {missing[0]} needs CONSTRAINT {missing[0]} EXPECT "
                             f"(NOT array_contains({FAILED_RULES}, '{missing[0]}'))")
    for table in tables.values():
        if extra := sorted(e.name for e in table.expectations if FAILED_RULES in e.condition and not e.rule):
            raise ValueError(f"{table.source_file}: {table.name}: expectations {extra} count no rule of {FAILED_RULES}")


def _read_files_call(query: exp.Query) -> exp.Anonymous | None:
    return next((f for f in query.find_all(exp.Anonymous) if f.name.lower() == "read_files"), None)


def _read_files(call: exp.Anonymous, where: str) -> ReadFiles:
    """The path, options and declared schema of a read_files() call."""
    path, *arguments = call.expressions
    if not path.name.startswith(LANDING_ROOT + "/"):
        raise ValueError(f"{where}: read_files must read under {LANDING_ROOT}, not {path.name!r}")
    options = {o.this.name: o.expression.name if isinstance(o.expression, exp.Literal)
               else o.expression.sql(DIALECT).lower() for o in arguments}
    declared = sqlglot.parse_one(f"CREATE TABLE t ({options.pop('schema')})", read=DIALECT)
    schema = {column.name: column.args["kind"].sql(DIALECT) for column in declared.this.expressions}
    return ReadFiles(path.name.removeprefix(LANDING_ROOT + "/"), options, schema)


def _source_schema(read_files: ReadFiles) -> dict[str, str]:
    """The columns read_files() yields: its schema, the rescue column and the file metadata."""
    return {**read_files.schema, RESCUED_DATA: "STRING",
            FILE_METADATA: "STRUCT<file_path: STRING, file_modification_time: TIMESTAMP>"}


def _without_stream(query: exp.Query) -> tuple[str, ...]:
    """Drop DLT's STREAM keyword (``FROM STREAM read_files(...)``, ``STREAM(table)``) from ``query``;
    each table it marked keeps ``meta["stream"]``. Returns the pipeline tables read as streams."""
    streams = set()
    for stream in list(query.find_all(exp.Stream)):
        inner = stream.this
        table = inner if isinstance(inner, exp.Table) else inner.this.copy()
        if isinstance(inner, exp.Subquery):
            table.set("alias", inner.args.get("alias"))
        table.meta["stream"] = True
        if not isinstance(table.this, exp.Anonymous):
            streams.add(f"{table.db}.{table.name}".lower())
        stream.replace(table)
    return tuple(sorted(streams))


def is_stream(table: exp.Table) -> bool:
    """Whether the query reads ``table`` as a stream: the rows added since the reader last read it."""
    return bool(table.meta.get("stream"))


def _header(text: str, source_file: str):
    """The parts of a ``CREATE [OR REFRESH] <kind> <name> [(constraints)] [COMMENT] [TBLPROPERTIES]
    [AS <query>]`` statement: kind, name, expectations, comment, properties and the query's text."""
    header = _HEADER.match(text)
    if not header:
        raise ValueError(f"{source_file}: expected CREATE [OR REFRESH] ... or CREATE FLOW ..., got {text[:60]!r}")
    name, rest = header["name"].lower(), text[header.end():]
    where = f"{source_file}: {name}"
    expectations = ()
    if rest.startswith("("):
        inner, rest = _parenthesised(rest)
        expectations = tuple(_parse_expectation(c, where) for c in _top_level_split(inner))
    comment, properties = "", {}
    if match := _COMMENT.match(rest):
        comment, rest = match["comment"].replace("''", "'"), rest[match.end():]
    if match := _PROPERTIES.match(rest):
        inner, rest = _parenthesised(rest[match.end():])
        properties = {m["key"]: m["value"] for m in map(_PROPERTY.fullmatch, _top_level_split(inner))}
    query_text = None
    if match := _AS.match(rest):
        query_text = rest[match.end():]
    elif rest.strip():
        raise ValueError(f"{where}: expected AS <query>, got {rest[:60]!r}")
    kind = " ".join(header["kind"].lower().split())
    if query_text is None and kind != "streaming table":
        raise ValueError(f"{where}: a {kind} needs AS <query>")
    return kind, name, expectations, comment, properties, query_text


def _parse_flow(text: str, source_file: str) -> tuple[str, AutoCdc]:
    """The target of an AUTO CDC flow, and the flow."""
    match = _FLOW.match(text)
    if not match:
        raise ValueError(f"{source_file}: not an AUTO CDC flow this reader knows: {text[:80]!r}")

    def names(group: str) -> tuple[str, ...] | None:
        return tuple(n.strip().lower() for n in match[group].split(",")) if match[group] else None

    return match["target"].lower(), AutoCdc(match["flow"].lower(), match["source"].lower(), names("keys"),
                   " ".join(match["delete_when"].split()) if match["delete_when"] else None,
                   match["sequence_by"].lower(), names("except_columns") or (), int(match["scd_type"] or 1),
                   names("track_history"))


def _cdc_columns(cdc: AutoCdc, source: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A CDC target's columns: the source's, less the ones left out; SCD type 2 adds START_AT and
    END_AT, of the sequence's type."""
    columns = tuple((name, type_) for name, type_ in source.items() if name not in cdc.except_columns)
    if cdc.scd_type == 2:
        columns += ((START_AT, source[cdc.sequence_by]), (END_AT, source[cdc.sequence_by]))
    return columns


def _parse_statement(text: str, known: dict[str, dict[str, str]], source_file: str) -> PipelineTable:
    kind, name, expectations, comment, properties, query_text = _header(text, source_file)
    if query_text is None:  # fed by the AUTO CDC flow that follows
        return PipelineTable(name, kind, comment, expectations, None, (), "", (), None, source_file,
                             properties=properties)
    query = sqlglot.parse_one(query_text, read=DIALECT)
    streams = _without_stream(query)
    expectations = _with_rules(expectations, query, f"{source_file}: {name}")

    schema = {layer: dict(tables) for layer, tables in _nested(known).items()}
    read_files, typed = None, query.copy()
    if call := _read_files_call(query):
        read_files = _read_files(call, f"{source_file}: {name}")
        call.parent.replace(exp.to_table(LANDED))
        schema["_landing"] = {"files": _source_schema(read_files)}  # for typing only: a qualified name
        _read_files_call(typed).parent.replace(exp.to_table("_landing.files"))
    for call in [f for f in typed.find_all(exp.Anonymous) if f.name.lower() == "try_to_timestamp"]:
        call.replace(exp.cast(call.copy(), "TIMESTAMP"))  # for typing only: sqlglot does not know it
    mapping = MappingSchema(schema, dialect=DIALECT)
    typed = annotate_types(qualify(typed, schema=mapping, dialect=DIALECT), schema=mapping, dialect=DIALECT)
    columns = tuple(
        (select.alias_or_name, select.type.sql(DIALECT))
        for select in typed.selects
        if select.alias_or_name != FILE_METADATA
    )
    upstream = tuple(
        sorted({f"{t.db}.{t.name}".lower() for t in query.find_all(exp.Table)} & set(known))
    )
    if read_files and SOURCE_FILE not in dict(columns):
        raise ValueError(f"{source_file}: {name} reads landed files: keep _metadata.file_path AS {SOURCE_FILE}")
    return PipelineTable(name, kind, comment, expectations, query, columns, columns[0][0], upstream, read_files,
                         source_file, streams, properties=properties)


def _fed_by(target: PipelineTable, cdc: AutoCdc, tables: dict[str, PipelineTable], source_file: str) -> PipelineTable:
    """The streaming table ``target`` with the AUTO CDC flow that feeds it. Its expectations count
    the rules its source evaluates into _failed_rules."""
    if cdc.source not in tables:
        raise ValueError(f"{source_file}: flow {cdc.flow} reads {cdc.source}, which is not declared before it")
    source = dict(tables[cdc.source].columns)
    if missing := [c for c in (*cdc.keys, cdc.sequence_by, *cdc.except_columns, *(cdc.track_history or ()))
                   if c not in source]:
        raise ValueError(f"{source_file}: flow {cdc.flow} names columns {missing} that {cdc.source} does not have")
    columns = _cdc_columns(cdc, source)
    expectations = _with_rules(target.expectations, tables[cdc.source].query, f"{source_file}: {target.name}")
    return replace(target, cdc=cdc, columns=columns, key=columns[0][0], upstream=(cdc.source,),
                   expectations=expectations)


def _nested(tables: dict[str, dict[str, str]]) -> dict[str, dict[str, dict[str, str]]]:
    nested: dict[str, dict[str, dict[str, str]]] = {}
    for name, columns in tables.items():
        layer, table = name.split(".")
        nested.setdefault(layer, {})[table] = columns
    return nested


def _display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _commented_columns(query: exp.Query) -> dict[str, str]:
    """{column: the ``--`` comment on the select item that defines it} of the query's output."""
    return {select.alias_or_name: " ".join(c.strip() for c in select.comments)
            for select in query.selects if select.comments}


def read_pipeline(files: Sequence[Path]) -> tuple[PipelineTable, ...]:
    """The tables declared in ``files``, in declaration order; each may read the ones before it.
    A column is described where it is defined, once: a name means the same in every table."""
    tables: dict[str, PipelineTable] = {}
    known: dict[str, dict[str, str]] = {}
    described = {RESCUED_DATA: "Auto Loader's rescue column: the values of columns the declared schema "
                               "does not have, as JSON (NULL when the file has none).",
                 START_AT: "AUTO CDC (SCD type 2): the _sequence of the change the version began with.",
                 END_AT: "AUTO CDC (SCD type 2): the _sequence of the change that ended the version "
                         "(NULL while it holds)."}
    for path in files:
        for statement in _split_statements(path.read_text()):
            if re.match(r"CREATE\s+FLOW\b", statement, re.IGNORECASE):
                name, cdc = _parse_flow(statement, _display_path(path))
                if name not in tables or tables[name].kind != "streaming table" or tables[name].query is not None:
                    raise ValueError(f"{_display_path(path)}: flow {cdc.flow} feeds {name}, which must be declared "
                                     "before it as a streaming table without a query")
                table = _fed_by(tables[name], cdc, tables, _display_path(path))
            else:
                table = _parse_statement(statement, known, _display_path(path))
            tables[table.name] = table
            known[table.name] = dict(table.columns)
            if table.query is not None:
                described = {**_commented_columns(table.query), **described}
    _check_rules_counted(tables)
    return tuple(replace(table, column_descriptions={name: described[name] for name, _ in table.columns
                                                     if name in described}) for table in tables.values())


def pipeline_settings() -> dict:
    """batch_ecomm_pipeline's settings in the bundle (libraries, configuration, catalog)."""
    return yaml.safe_load(PIPELINE_BUNDLE.read_text())["resources"]["pipelines"]["batch_ecomm_pipeline"]


def pipeline_files() -> list[Path]:
    """The pipeline's SQL files, as the bundle lists them (relative to the bundle file)."""
    return [(PIPELINE_BUNDLE.parent / library["file"]["path"]).resolve() for library in pipeline_settings()["libraries"]]


def parsed_pipeline_file(files: Sequence[Path]) -> Path:
    """Where `make manifest` keeps the parsed pipeline, as dbt keeps its manifest: beside this
    module's bytecode, named by a hash of all the parse depends on (the bundle, the SQL files, this
    module, sqlglot's version), so that any change means a new parse. Reading it takes about 10 ms
    where parsing takes 0.25 s of every start-up."""
    digest = hashlib.sha256(sqlglot.__version__.encode())
    for path in [PIPELINE_BUNDLE, Path(__file__), *files]:
        digest.update(path.read_bytes())
    return Path(__file__).parent / "__pycache__" / f"pipeline_sql.{digest.hexdigest()[:16]}.pickle"


@cache
def pipeline_tables() -> tuple[PipelineTable, ...]:
    """Every table of the DLT pipeline batch_ecomm_pipeline, in dependency order: parsed from the
    SQL, or read from its parse when `make manifest` kept one of this very SQL."""
    files = pipeline_files()
    if (parsed := parsed_pipeline_file(files)).exists():
        return pickle.loads(parsed.read_bytes())
    tables = read_pipeline(files)
    if unfed := [t.name for t in tables if t.query is None and t.cdc is None]:
        raise ValueError(f"streaming tables {unfed} have neither a query nor a flow that feeds them")
    return tables


def keep_parsed_pipeline() -> Path:
    """Parse the pipeline and keep the parse (`make manifest`), in place of any older one."""
    parsed = parsed_pipeline_file(pipeline_files())
    if not parsed.exists():
        for older in parsed.parent.glob("pipeline_sql.*.pickle"):
            older.unlink()
        parsed.parent.mkdir(exist_ok=True)
        written = parsed.with_suffix(".writing")
        written.write_bytes(pickle.dumps(pipeline_tables()))
        written.replace(parsed)  # whole or not at all, for a start-up reading it meanwhile
    return parsed
