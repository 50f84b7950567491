"""The model repository: ``models/<name>/<version>/`` discovery, TF Serving model config (version policy, labels),
and the checks made on a version directory before anyone tries to load it."""
