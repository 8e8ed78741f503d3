"""The web app: one module per tab, each wiring widgets to ``lab`` functions (no logic of its own).

``lab.ui.app.build_app()`` assembles the tabs; ``lab.ui.forms`` builds inputs from config
dataclasses; ``lab.ui.plots`` draws the figures. Only this package imports Gradio.
"""
