"""Inputs of the wrong type, as an API client can send them, are refused at the handler's door with a message naming
the input (lab.ui.inputs, through ``guarded``), where they used to fail inside the engine ("'float' object has no
attribute 'strip'", a traceback in the log): a hostile probe's sweep of every named endpoint found dozens."""

from __future__ import annotations

from inspect import signature
from typing import Any

import gradio as gr
import pytest
from gradio_client import Client

from lab.ui.common import guarded
from tests.app_server import AppServer, lab_app  # noqa: F401 - the session's running app


def echo(ref: str | None, limit: float, names: list[str] | None, anything: Any = None) -> dict:
    return {}


def test_a_handler_s_keyword_rest_is_checked_value_by_value():
    from lab.errors import LabError
    from lab.ui.inputs import checker

    def mapped(source: str, **columns: str) -> dict:
        return {}

    check = checker(mapped)
    check(("a",), {"prompt": "question", "response": None})  # each column's text, or none
    with pytest.raises(LabError, match="response must be text, not a number"):
        check(("a",), {"prompt": "question", "response": 3})


@pytest.fixture(scope="module")
def toy():
    with gr.Blocks() as demo:
        out = gr.Markdown("kept")
        status = gr.Markdown()
        inputs = [gr.JSON() for _ in range(4)]  # JSON passes any value through, as an API client may send it
        gr.Button("go").click(guarded(echo, status), inputs, [out, status], api_name="go")
    demo.launch(prevent_thread_lock=True, quiet=True)
    yield Client(demo.local_url, verbose=False)
    demo.close()


@pytest.mark.parametrize("args, said", [
    ((5, 1, None, None), "ref must be text, not a number"),
    (("a", "x", None, None), "limit must be a number, not text"),
    (("a", True, None, None), "limit must be a number, not true or false"),
    (("a", 2, "b", None), "names must be a list, not text"),
    (("a", 2, {"x": 1}, None), "names must be a list, not an object"),
])
def test_a_wrong_type_is_refused_with_the_input_s_name(toy, args, said):
    _, status = toy.predict(*args, api_name="/go")
    assert said in status and "failed unexpectedly" not in status


def test_right_types_and_empty_inputs_pass(toy):
    assert toy.predict("a", 2, ["b"], {"any": "thing"}, api_name="/go")[1] == {"__type__": "update"}
    assert toy.predict(None, 2, None, None, api_name="/go")[1] == {"__type__": "update"}


def test_the_app_names_the_input_a_client_got_wrong(lab_app: AppServer):  # noqa: F811
    client = Client(lab_app.url, verbose=False)
    *_, status = client.predict(3.5, api_name="/data_version_card")
    assert "ref must be text, not a number ('3.5')" in status, status


def widget_value(component: Any) -> tuple[bool, Any]:
    """(known, a value) of the kind ``component`` sends when a person uses it: text for a textbox, a number for a
    number box or slider, a choice's value for a dropdown or radio (a list of them where several can be picked), a
    path for a file box. Unknown widgets (tables, state, JSON) are left out."""
    choices = [value for _, value in getattr(component, "choices", None) or []]
    if isinstance(component, gr.CheckboxGroup) or (isinstance(component, gr.Dropdown) and component.multiselect):
        return True, choices[:1] or ["x"]
    if isinstance(component, (gr.Dropdown, gr.Radio)):
        return True, choices[0] if choices else "x"
    if isinstance(component, gr.Checkbox):
        return True, True
    if isinstance(component, gr.Number):
        return True, 1 if component.precision == 0 else 1.5
    if isinstance(component, gr.Slider):
        return True, float(component.minimum)
    if isinstance(component, (gr.Textbox, gr.Code)):
        return True, "x"
    if isinstance(component, gr.File):
        return True, ["/tmp/x.jsonl"] if component.file_count == "multiple" else "/tmp/x.jsonl"
    return False, None


def special(parameter: Any) -> bool:
    """Whether Gradio fills ``parameter`` itself (``gr.Request``, ``gr.Progress``, event data), not a widget."""
    hint = str(parameter.annotation)
    return any(name in hint for name in ("Request", "Progress", "SelectData", "EventData"))


def test_what_every_widget_of_the_app_sends_passes_its_handler_s_checks(home):
    """The checks must refuse an API client's wrong types, never what the page's own widgets send: every event of
    the real app, each input given the kind of value its widget sends, passes its handler's checker."""
    from lab.ui.app import build_app
    from lab.ui.inputs import checker

    app = build_app(home)
    checked = 0
    for block_fn in app.fns.values():
        inner = getattr(block_fn.fn, "__wrapped__", None)
        if inner is None or not block_fn.inputs:
            continue
        known, values = zip(*(widget_value(c) for c in block_fn.inputs))
        values = [v if k else None for k, v in zip(known, values)]  # None passes: the widget's own value is unknown
        keywords = list(block_fn.input_keyword_names or [])
        given = iter(values[:len(values) - len(keywords)])
        # Gradio puts a request, progress or event data where the handler asks for one, between the widgets' values.
        positional = [None if special(p) else next(given, None) for p in signature(inner).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        check = checker(inner)
        try:
            check(tuple(positional), dict(zip(keywords, values[len(values) - len(keywords):])))
        except Exception as err:  # noqa: BLE001 - named with the event, for the reader
            raise AssertionError(f"{block_fn.api_name or block_fn.name}: {err}") from None
        checked += 1
    assert checked > 80  # the app's guarded events, all of them looked at
