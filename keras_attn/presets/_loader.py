"""Reads the papers' tables (the JSON files beside this module) into Preset objects, checked once.

A file holds one paper::

    {"paper": "<citation>",
     "notes": ["<why, for readers; not loaded>", ...],                     (optional)
     "recipes": {"<name>": {"dataset": ..., "input_shape": [h, w, c], "num_classes": ..., ...},
                 "<name>": {"extends": "<earlier name>", "<field>": <replacement>, ...}},
     "tables": [{"name": "<table>", "table": "Table 5", "description": "...",
                 "notes": [...],                                             (optional)
                 "recipe": "<name>",
                 "rows": [{"slug": "<row>", "row": "<the paper's label>",
                           "model": {build_model keyword arguments},
                           "paper_params": <int> or null, "paper_result": "<text>" or null}]}],
     "unsupported": [{"table": "Table 1", "rows": "<which>", "reason": "<why not>"}]}

Each row is written out in full (no defaults shared between rows), so a row reads as what
``get_preset`` returns. JSON has no tuples; every array is read as one, as the public objects
hold placement roles and input shapes.
"""

import dataclasses
import importlib.resources
import json
import re

from keras_attn.backbones import SUPPORTED_BACKBONES
from keras_attn.registry import available_attentions


@dataclasses.dataclass(frozen=True)
class PresetRow:
    """One experiment a paper reports.

    Attributes:
        name: ``"<table>/<slug>"``, e.g. ``"sb-table5/mobilenetv2-x035-sb-c1"``.
        paper, table: the citation and the table (``"Table 5"``, ``"Figure 4"``).
        row: the paper's label of the row.
        model: ``keras_attn.build_model`` keyword arguments, all but ``input_shape``,
            ``num_classes`` and ``seed`` (those come from the recipe and the run).
        recipe: the paper's training recipe (``dataset``, ``input_shape``, ``num_classes``, ...),
            informational.
        paper_params: the trainable-parameter count the paper reports, or None where this
            package's network differs from the paper's (the count is then in ``paper_result``).
        paper_result: the paper's result as text (with its unit), or None where it only plots it.
        is_baseline: the row without attention (``model["attention"] is None``).
    """

    name: str
    paper: str
    table: str
    row: str
    model: dict
    recipe: dict
    paper_params: "int | None"
    paper_result: "str | None"
    is_baseline: bool


@dataclasses.dataclass(frozen=True)
class Preset:
    """One table of one paper: ``name``, ``paper``, ``table``, ``description`` and its ``rows``
    (a tuple of :class:`PresetRow`, in the paper's order)."""

    name: str
    paper: str
    table: str
    description: str
    rows: tuple


@dataclasses.dataclass(frozen=True)
class Paper:
    """One file read: its name (``source``), citation, recipes by name, presets and
    ``unsupported`` entries ``(paper, table, rows, reason)``."""

    source: str
    paper: str
    recipes: dict
    presets: tuple
    unsupported: tuple


_NAME = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
_TYPE_NAMES = {str: "a string", int: "an integer", type(None): "null", list: "an array",
               dict: "an object"}
# Field -> accepted JSON types, for each kind of object in a file; "notes" may be left out.
_FILE_FIELDS = {"paper": (str,), "notes": (list,), "recipes": (dict,), "tables": (list,),
                "unsupported": (list,)}
_TABLE_FIELDS = {"name": (str,), "table": (str,), "description": (str,), "notes": (list,),
                 "recipe": (str,), "rows": (list,)}
_ROW_FIELDS = {"slug": (str,), "row": (str,), "model": (dict,),
               "paper_params": (int, type(None)), "paper_result": (str, type(None))}
_UNSUPPORTED_FIELDS = {"table": (str,), "rows": (str,), "reason": (str,)}
_OPTIONAL = ("notes",)
_RECIPE_FIELDS = ("dataset", "input_shape", "num_classes")
# build_model arguments that the recipe and the run give, never a row.
_RUN_ARGUMENTS = ("input_shape", "num_classes", "seed")


def read_paper(file_name):
    """The paper in ``keras_attn/presets/<file_name>`` -> :class:`Paper`.

    Raises:
        ValueError: the file is not JSON or a field is wrong (the message names the file, the
            table and row, and the field).
    """
    text = importlib.resources.files(__package__).joinpath(file_name).read_text("utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{file_name}: not valid JSON: {err}") from None
    return parse_paper(raw, file_name)


def parse_paper(raw, source):
    """A paper's decoded JSON (see the module docstring) -> :class:`Paper`; ``source`` names it
    in errors.

    Raises:
        ValueError: a missing, unknown or mistyped field, an unknown backbone, attention or
            recipe, a malformed or repeated name, or a table with more than one baseline.
    """
    _check_fields(raw, _FILE_FIELDS, source)
    paper = raw["paper"]
    recipes = _recipes(raw["recipes"], source)
    presets = tuple(
        _preset(table, paper, recipes, f"{source}: table {i}")
        for i, table in enumerate(raw["tables"])
    )
    _check_unique([p.name for p in presets], f"{source}: table name")
    unsupported = tuple(
        _unsupported(entry, paper, f"{source}: unsupported {i}")
        for i, entry in enumerate(raw["unsupported"])
    )
    return Paper(source, paper, recipes, presets, unsupported)


def index_presets(papers):
    """Presets by name over all ``papers``.

    Raises:
        ValueError: two files define the same table name (both are named).
    """
    index, sources = {}, {}
    for paper in papers:
        for preset in paper.presets:
            if preset.name in index:
                raise ValueError(f"{paper.source}: table {preset.name!r} is already defined in "
                                 f"{sources[preset.name]}")
            index[preset.name], sources[preset.name] = preset, paper.source
    return index


def _recipes(raw, where):
    """Recipe name -> dict; ``{"extends": base, ...}`` is base's fields with these replaced."""
    recipes = {}
    for name, fields in raw.items():
        at = f"{where}: recipe {name!r}"
        if not isinstance(fields, dict):
            raise ValueError(f"{at}: must be an object, got {fields!r}")
        fields = dict(fields)
        base = fields.pop("extends", None)
        if base is not None:
            if base not in recipes:
                raise ValueError(f"{at}: field 'extends' is {base!r}; valid (recipes above "
                                 f"it): {', '.join(map(repr, recipes)) or 'none'}")
            fields = {**recipes[base], **fields}
        for field in _RECIPE_FIELDS:
            if field not in fields:
                raise ValueError(f"{at}: missing field {field!r}")
        recipes[name] = _tuples(fields)
    return recipes


def _preset(raw, paper, recipes, where):
    where = _named(raw, "name", where)
    _check_fields(raw, _TABLE_FIELDS, where)
    name = raw["name"]
    _check_name(name, where, "name")
    if raw["recipe"] not in recipes:
        raise ValueError(f"{where}: field 'recipe' is {raw['recipe']!r}; valid: "
                         f"{', '.join(map(repr, recipes))}")
    recipe = recipes[raw["recipe"]]
    rows = tuple(
        _row(row, name, paper, raw["table"], recipe, f"{where}, row {i}")
        for i, row in enumerate(raw["rows"])
    )
    if not rows:
        raise ValueError(f"{where}: field 'rows' is empty")
    _check_unique([row.name for row in rows], f"{where}: row name")
    baselines = [row.name for row in rows if row.is_baseline]
    if len(baselines) > 1:
        raise ValueError(f"{where}: more than one baseline row (attention null): "
                         f"{', '.join(baselines)}")
    return Preset(name, paper, raw["table"], raw["description"], rows)


def _row(raw, table_name, paper, table, recipe, where):
    where = _named(raw, "slug", where)
    _check_fields(raw, _ROW_FIELDS, where)
    _check_name(raw["slug"], where, "slug")
    model = _model(_tuples(raw["model"]), where)
    return PresetRow(
        name=f"{table_name}/{raw['slug']}",
        paper=paper,
        table=table,
        row=raw["row"],
        model=model,
        recipe=dict(recipe),
        paper_params=raw["paper_params"],
        paper_result=raw["paper_result"],
        is_baseline=model["attention"] is None,
    )


def _model(model, where):
    """Checks what the table can get wrong before anything builds: the names and the kinds."""
    at = f"{where}, field 'model'"
    for key in _RUN_ARGUMENTS:
        if key in model:
            raise ValueError(f"{at}: {key!r} is given by the recipe or the run, not a row")
    if model.get("backbone") not in SUPPORTED_BACKBONES:
        raise ValueError(f"{at}: backbone {model.get('backbone')!r}; valid: "
                         f"{', '.join(SUPPORTED_BACKBONES)}")
    if "attention" not in model:
        raise ValueError(f"{at}: missing 'attention' (null for the baseline)")
    attention = model["attention"]
    if attention is None:
        extra = [key for key in ("placement", "attention_kwargs") if key in model]
        if extra:
            raise ValueError(f"{at}: {extra[0]!r} without an attention")
        return model
    if attention not in available_attentions():
        raise ValueError(f"{at}: attention {attention!r}; valid: "
                         f"{', '.join(available_attentions())} or null")
    placement = model.get("placement", "block")
    if not (isinstance(placement, str)
            or isinstance(placement, tuple) and placement
            and all(isinstance(role, str) for role in placement)):
        raise ValueError(f"{at}: placement {placement!r} must be a string or an array of "
                         "convolution roles")
    if not isinstance(model.get("attention_kwargs", {}), dict):
        raise ValueError(f"{at}: attention_kwargs {model['attention_kwargs']!r} must be an object")
    return model


def _unsupported(raw, paper, where):
    """``(paper, table, rows, reason)``: a part of the paper this package cannot express."""
    _check_fields(raw, _UNSUPPORTED_FIELDS, where)
    return (paper,) + tuple(raw[field] for field in _UNSUPPORTED_FIELDS)


def _check_fields(obj, spec, where):
    """``obj`` if it is a JSON object with ``spec``'s fields (``notes`` optional), each of its
    types and no empty string; else a ValueError naming ``where`` and the field."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: must be an object with fields {', '.join(spec)}, got {obj!r}")
    for field in obj:
        if field not in spec:
            raise ValueError(f"{where}: unknown field {field!r}; valid: {', '.join(spec)}")
    for field, types in spec.items():
        if field not in obj:
            if field in _OPTIONAL:
                continue
            raise ValueError(f"{where}: missing field {field!r}")
        value = obj[field]
        # bool is an int to isinstance; a count of true is a mistake.
        if not isinstance(value, types) or isinstance(value, bool):
            kinds = " or ".join(_TYPE_NAMES[t] for t in types)
            raise ValueError(f"{where}: field {field!r} must be {kinds}, got {value!r}")
        if value == "" or field in _OPTIONAL and not all(isinstance(n, str) for n in value):
            raise ValueError(f"{where}: field {field!r} is empty or not text: {value!r}")
    return obj


def _named(raw, field, where):
    """``where`` with the object's name, when it has one to give."""
    name = raw.get(field) if isinstance(raw, dict) else None
    return f"{where} {name!r}" if isinstance(name, str) else where


def _check_name(name, where, field):
    if not _NAME.fullmatch(name):
        raise ValueError(f"{where}: field {field!r} is {name!r}; valid names are lower-case "
                         "letters and digits joined by '-' or '.'")


def _check_unique(names, what):
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} appears twice")
        seen.add(name)


def _tuples(value):
    """JSON arrays as tuples, through objects and arrays (the public objects hold tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    return value
