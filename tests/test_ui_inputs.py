"""Inputs of the wrong type, as an API client can send them, are refused at the handler's door with a message naming
the input (lab.ui.inputs, through ``guarded``), where they used to fail inside the engine ("'float' object has no
attribute 'strip'", a traceback in the log): a hostile probe's sweep of every named endpoint found dozens."""

from __future__ import annotations

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
