"""Engine setup inside QGIS: find a Python, build a private venv with the engine, fetch the model, swap it in.

Modules: ``python_finder`` (which interpreter), ``plan`` (what is installed where, pure), ``installer`` (runs the
steps, atomic swap, removal), ``task`` (the QgsTask), ``dialog`` (the setup dialog), ``offer`` (the "Set up
engine" offer shown where the panel or Processing finds no working engine).
"""
