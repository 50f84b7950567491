"""A Bento built by `bentoml build` from bentofile.yaml, served by `bentoml serve <tag>`, called by BentoML's client.

The build goes into a temporary BENTOML_HOME, so no user's store is touched. This is the deployable unit
bentofile.yaml promises: if it packs too little (a module, the console's files) the served Bento fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.serve_process import start_bento
from tests.service.transport.http.test_bentoml_serve import classify_by_bentoml_client, shape_files

REPO = Path(__file__).resolve().parents[4]


def test_a_built_bento_serves_the_classify_api(model_repo, tiny_training, tmp_path):
    env = {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    built = subprocess.run([str(Path(sys.executable).with_name("bentoml")), "build", "--output", "tag"], cwd=REPO,
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("tlserve:")
    served = start_bento(tag, model_repo, tmp_path / "bento.log", env)
    try:
        classify_by_bentoml_client(served.url, shape_files(tiny_training, tmp_path))
    finally:
        served.stop()
    assert served.process.returncode == 0, served.output()
