"""Running IoT Hub twin queries (:mod:`methodhub.query`) in the database: each identity's twin as
one JSON document, built in SQL from the identity and its twin row, and the query's WHERE,
projection and grouping evaluated there, so a query over many devices never loads them all.

The document (what a query's paths name): ``deviceId``, ``moduleId`` (modules), ``etag``,
``version``, ``status``, ``statusReason``, ``tags``, ``properties.desired`` and
``properties.reported`` (each with ``$version``), ``capabilities.iotEdge`` (devices). Not in it:
``connectionState`` and ``lastActivityTime`` (live, not stored: a condition on them matches nothing),
``$metadata``.
"""

from __future__ import annotations

from methodhub.query import Collection, Flavour, Query, SqlQuery, to_sql
from methodhub.registry.twins import twin_etag

_EMPTY_ETAG = twin_etag(1, 1, 1)  # base64: no quote can appear in it


_SQLITE_EDGE = "CASE WHEN i.iot_edge THEN 'true' ELSE 'false' END"


def _sqlite_documents(modules: bool) -> str:
    module = "CASE WHEN i.module_id = '' THEN NULL ELSE i.module_id END"
    return (
        "SELECT i.device_id AS device_id, i.module_id AS module_id, json_object("
        "'deviceId', i.device_id, "
        + (f"'moduleId', {module}, " if modules else "")
        + f"'etag', COALESCE(t.etag, '{_EMPTY_ETAG}'), 'version', COALESCE(t.version, 1), "
        "'status', i.status, 'statusReason', i.status_reason, "
        "'tags', json(COALESCE(json_extract(t.document, '$.tags'), '{}')), "
        "'properties', json_object("
        "'desired', json_set(COALESCE(json_extract(t.document, '$.desired'), '{}'), "
        "'$.\"$version\"', COALESCE(t.desired_version, 1)), "
        "'reported', json_set(COALESCE(json_extract(t.document, '$.reported'), '{}'), "
        "'$.\"$version\"', COALESCE(t.reported_version, 1)))"
        + ("" if modules else ", 'capabilities', json_object('iotEdge', json(" + _SQLITE_EDGE + "))")
        + ") AS doc FROM identities i LEFT JOIN twins t "
        "ON t.device_id = i.device_id AND t.module_id = i.module_id "
        + ("WHERE i.module_id != ''" if modules else "WHERE i.module_id = ''")
    )


def _postgres_documents(modules: bool) -> str:
    return (
        "SELECT i.device_id AS device_id, i.module_id AS module_id, jsonb_strip_nulls(jsonb_build_object("
        "'deviceId', i.device_id"
        + (", 'moduleId', i.module_id" if modules else "")
        + f", 'etag', COALESCE(t.etag, '{_EMPTY_ETAG}'), 'version', COALESCE(t.version, 1), "
        "'status', i.status)) || jsonb_build_object('statusReason', i.status_reason, "
        "'tags', COALESCE(t.document -> 'tags', '{}'::jsonb), "
        "'properties', jsonb_build_object("
        "'desired', COALESCE(t.document -> 'desired', '{}'::jsonb) "
        "|| jsonb_build_object('$version', COALESCE(t.desired_version, 1)), "
        "'reported', COALESCE(t.document -> 'reported', '{}'::jsonb) "
        "|| jsonb_build_object('$version', COALESCE(t.reported_version, 1)))"
        + ("" if modules else ", 'capabilities', jsonb_build_object('iotEdge', i.iot_edge)")
        + ") AS doc FROM identities i LEFT JOIN twins t "
        "ON t.device_id = i.device_id AND t.module_id = i.module_id "
        + ("WHERE i.module_id <> ''" if modules else "WHERE i.module_id = ''")
    )


def twin_query_sql(
    query: Query, flavour: Flavour, offset: int, limit: int, after: tuple[str, str] | None = None
) -> tuple[SqlQuery, str, tuple[object, ...]]:
    """The translation, statement and parameters of one page (``offset``, ``limit`` rows) of
    ``query`` over devices or modules (``devices.jobs`` is not stored here); ``translation.row``
    turns each fetched row into a result row. ``after``: ``(device_id, module_id)`` (``""`` for a
    device) of the last row of the previous page — the page starts after it, by index, instead of
    skipping ``offset`` rows (a query without TOP, GROUP BY or aggregates only)."""
    if query.from_ is Collection.JOBS:
        raise ValueError("devices.jobs rows are not twin documents")
    modules = query.from_ is Collection.MODULES
    documents = (_sqlite_documents if flavour is Flavour.SQLITE else _postgres_documents)(modules)
    columns: dict[tuple[str, ...], str] = {("deviceId",): "device_id"}
    if modules:
        columns[("moduleId",)] = "module_id"
    sql = to_sql(query, flavour, doc_column="doc", text_columns=columns)
    mark = "?" if flavour is Flavour.SQLITE else "$"
    n = len(sql.params)
    where = sql.where
    params: tuple[object, ...] = tuple(sql.params)
    if after is not None:
        if sql.group_by or query.is_aggregate or sql.limit is not None:
            raise ValueError("paging by the last row needs a query without TOP, GROUP BY or aggregates")
        where = f"({where}) AND (device_id, module_id) > ({mark}{n + 1}, {mark}{n + 2})"
        params, n = (*params, *after), n + 2
    text = f"SELECT {', '.join(sql.columns)} FROM ({documents}) AS docs WHERE {where}"
    if sql.group_by:
        text += " GROUP BY " + ", ".join(sql.group_by) + " ORDER BY 1"
    elif not query.is_aggregate:
        text += " ORDER BY device_id, module_id"
    top = sql.limit
    if top is not None:
        limit = max(0, min(limit, top - offset))
    text += f" LIMIT {mark}{n + 1} OFFSET {mark}{n + 2}"
    return sql, text, (*params, limit, offset)
