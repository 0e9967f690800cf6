"""One route's answer -> its records' raw values (a block, a row per record, a column per
``Route.columns``) and each record's unknown fields (``extra``), following the route's
shape (``snapshotter.routes.Route``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any

import numpy as np

from snapshotter.normalize.values import PayloadError, clean_json, clean_text
from snapshotter.routes import Route

Extra = dict[str, Any] | None
_EMPTY: Mapping[str, Any] = {}


def _records(raw: Any, what: str) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        raise PayloadError(f"{what}: expected a list of objects, got {type(raw).__name__}")
    return raw


def _object(raw: Any, route: Route) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        what = (f"keyed by {route.group_column}" if route.shape == "keyed"
                else f"with {' and '.join(route.groups)}")
        raise PayloadError(f"{route.name}: expected an object {what}, got "
                           f"{type(raw).__name__}")
    return raw


def _grouped(route: Route, raw: Any) -> Iterator[tuple[Any, Mapping[str, Any]]]:
    """(the record's group, the record), in the order the table keeps them."""
    if route.shape == "list":
        for record in _records(raw, route.name):
            yield None, record
    elif route.shape == "grouped":
        answer = _object(raw, route)
        for group in route.groups:
            for record in _records(answer.get(group), f"{route.name}.{group}"):
                yield group, record
    else:
        answer = _object(raw, route)
        for key in sorted(answer):
            if not isinstance(answer[key], Mapping):
                raise PayloadError(f"{route.name}.{key}: expected an object")
            yield str(key), answer[key]


def _inner(route: Route, group: Any, record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The record's nested objects whose leaves are columns ({} where absent)."""
    objects = []
    for parent in route.nested:
        value = record.get(parent)
        if route.nested_prefix:
            objects.append(value if isinstance(value, Mapping) else _EMPTY)
            continue
        value = value or {}
        if not isinstance(value, Mapping):
            raise PayloadError(f"{route.name}.{group}.{parent}: expected an object")
        objects.append(value)
    return objects


def _extra(route: Route, record: Mapping[str, Any], inner: list[Mapping[str, Any]]) -> Extra:
    """The record's fields the route does not know, as cleaned copies, in the record's
    order (leaves of a nested object under its name). None: there are none."""
    fields, nested = route.fields, route.nested
    odd = [key for key in record if key not in fields]  # unknown, and nested objects
    if not odd:
        return None
    extra: dict[str, Any] = {}
    for key in odd:
        leaves = nested.get(key)
        value = record[key]
        if leaves is None:
            extra[clean_text(str(key))] = clean_json(value)
        elif not route.nested_prefix:
            continue  # kept below, after the record's own fields
        elif isinstance(value, Mapping):
            unknown = {leaf: clean_json(v) for leaf, v in value.items() if leaf not in leaves}
            if unknown:
                extra[clean_text(str(key))] = unknown
        elif value is not None:
            extra[clean_text(str(key))] = clean_json(value)
    if not route.nested_prefix:
        for (parent, leaves), values in zip(nested.items(), inner, strict=True):
            unknown = {leaf: clean_json(v) for leaf, v in values.items() if leaf not in leaves}
            if unknown:
                extra[parent] = unknown
    return extra or None


def read(route: Route, raw: Any) -> tuple[np.ndarray, list[Extra]]:
    """The answer's values (records x ``route.columns``; None where absent) and extras."""
    fields = list(route.fields)
    leaves = [list(children) for children in route.nested.values()]
    rows: list[list[Any]] = []
    extras: list[Extra] = []
    for group, record in _grouped(route, raw):
        inner = _inner(route, group, record)
        row = [group] if route.group_column else []
        row += map(record.get, fields)
        for values, names in zip(inner, leaves, strict=True):
            row += map(values.get, names)
        rows.append(row)
        extras.append(_extra(route, record, inner))
    width = len(route.columns)
    block = np.fromiter(chain.from_iterable(rows), dtype=object, count=len(rows) * width)
    return block.reshape(len(rows), width), extras
