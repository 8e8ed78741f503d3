"""Build Gradio inputs from a config dataclass, and a config back from their values.

Every field of a config dataclass (``lab.config``) carries its help text and, for fixed sets,
its choices in ``metadata``. A form is made from those fields, so labels, defaults, help and
choices are written once, in the config, and the CLI and the web app agree::

    form = build_form(DataConfig, only=("dedup_exact", "dedup_near"))
    button.click(fn, inputs_kwargs=form.components, ...)   # fn(**values)
    cfg = form.to_config(values)                             # a validated DataConfig

Field type → component: ``int`` → ``gr.Number(precision=0)``, ``float`` → ``gr.Number``,
``bool`` → ``gr.Checkbox``, choices → ``gr.Dropdown``, ``str`` → ``gr.Textbox``. A field's
widget can be replaced through ``overrides`` (e.g. a slider for a threshold).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import gradio as gr

from lab.config import field_label, from_dict

Factory = Callable[[dataclasses.Field, dict[str, Any]], gr.components.Component]


def field_kind(f: dataclasses.Field) -> type:
    """The field's Python type, from its default (configs give every field a default)."""
    if f.default is not dataclasses.MISSING:
        return type(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return type(f.default_factory())  # type: ignore[misc]
    return str


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def base_kwargs(f: dataclasses.Field, **extra: Any) -> dict[str, Any]:
    """Label, default value and help (as ``info``) of a field, plus ``extra``."""
    kwargs: dict[str, Any] = {"label": field_label(f.name), "value": field_default(f)}
    if f.metadata.get("help"):
        kwargs["info"] = f.metadata["help"]
    kwargs.update(extra)
    return kwargs


def component_for(f: dataclasses.Field, **extra: Any) -> gr.components.Component:
    """The input component for one config field, rendered in the current Blocks context."""
    kwargs = base_kwargs(f, **extra)
    choices = f.metadata.get("choices")
    kind = field_kind(f)
    if choices:
        return gr.Dropdown(choices=list(choices), **kwargs)
    if kind is bool:
        return gr.Checkbox(**kwargs)
    if kind is int:
        return gr.Number(precision=0, **kwargs)
    if kind is float:
        return gr.Number(**kwargs)
    return gr.Textbox(**kwargs)


@dataclass
class Form:
    """The components of a form, keyed by config field name (the handler's keyword names)."""

    cls: type
    components: dict[str, gr.components.Component] = field(default_factory=dict)

    def __getitem__(self, name: str) -> gr.components.Component:
        return self.components[name]

    def __iter__(self):
        return iter(self.components.values())

    def union(self, *others: "Form") -> "Form":
        """One form holding this form's components and those of ``others`` (same config class)."""
        merged = Form(self.cls, dict(self.components))
        for other in others:
            merged.components.update(other.components)
        return merged

    def to_config(self, values: dict[str, Any], **fixed: Any) -> Any:
        """A config from the form's values (plus ``fixed`` ones), typed and validated.

        Only the form's own fields are taken from ``values``; the rest keep their defaults.
        Raises ``LabError`` naming the field when a value has the wrong type or is out of range.
        """
        chosen = {name: values[name] for name in self.components if name in values and values[name] is not None}
        chosen.update(fixed)
        cfg = from_dict(self.cls, chosen, where="settings")
        validate = getattr(cfg, "validate", None)
        if callable(validate):
            validate()
        return cfg


def build_form(
    cls: type,
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    overrides: dict[str, Factory] | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
    rows: Sequence[Sequence[str]] | None = None,
) -> Form:
    """Create (and render, in the current Blocks context) one input per field of ``cls``.

    ``only`` keeps those fields, in that order; ``exclude`` drops fields; ``overrides`` maps a
    field name to ``factory(field, kwargs)`` returning its component, where ``kwargs`` holds
    the label, value and info built from the field; ``extra`` adds keyword arguments per field.
    ``rows`` lays the fields out in ``gr.Row``s, one group per row (this sets ``only``).
    """
    if rows is not None:
        form = Form(cls)
        for group in rows:
            with gr.Row():
                part = build_form(cls, only=group, exclude=exclude, overrides=overrides, extra=extra)
            form.components.update(part.components)
        return form
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    names = list(only) if only is not None else list(by_name)
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    skipped = set(exclude)
    form = Form(cls)
    for name in names:
        if name in skipped:
            continue
        f = by_name[name]
        more = dict((extra or {}).get(name, {}))
        factory = (overrides or {}).get(name)
        form.components[name] = factory(f, base_kwargs(f, **more)) if factory else component_for(f, **more)
    return form


def slider(minimum: float, maximum: float, step: float) -> Factory:
    """An override that shows a number field as a slider."""

    def make(f: dataclasses.Field, kwargs: dict[str, Any]) -> gr.components.Component:
        return gr.Slider(minimum=minimum, maximum=maximum, step=step, **kwargs)

    return make
