"""A handler's empty dict means "nothing changes" (lab.ui.common.unchanged, applied by ``guarded``): Gradio itself
reads an empty dict as one output's value, which failed the Data tab's upload removal (several outputs) and the
Eval tab's Refresh (one Markdown output) with an error."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client

from lab.ui.common import guarded

NO_CHANGE = {"__type__": "update"}  # what a client receives for an output left as it is


def nothing() -> dict:
    return {}


def test_an_empty_dict_leaves_every_output_as_it_is_through_a_real_gradio_event():
    with gr.Blocks() as demo:
        one = gr.Markdown("kept")
        two, three = gr.Textbox("also kept"), gr.Number(7)
        gr.Button("single").click(guarded(nothing, None), None, one, api_name="single")
        gr.Button("several").click(guarded(nothing, None), None, [one, two, three], api_name="several")
        gr.Button("bare").click(nothing, None, [one, two, three], api_name="bare")  # without guarded
    demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        assert client.predict(api_name="/single") == NO_CHANGE
        assert client.predict(api_name="/several") == (NO_CHANGE, NO_CHANGE, NO_CHANGE)
        with pytest.raises(Exception, match="error"):  # what the lab's handlers met before
            client.predict(api_name="/bare")
    finally:
        demo.close()
