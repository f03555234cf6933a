"""Loading a model while another process keeps saving into the same folder always returns one whole save."""

import subprocess
import sys
import time

import numpy as np

import microcnn

WRITER = """
import sys, numpy as np, microcnn
model = microcnn.Sequential([microcnn.layers.Dense(4, activation="softmax", input_shape=(8,))])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
model.fit(np.ones((4, 8), np.float32), np.array([0, 1, 2, 3]), verbose=0)
for i in range(100000):
    for w in model.named_weights().values():
        w[...] = i  # every save holds a different constant, so a mix of two saves would show
    model.save(sys.argv[1], metadata={"generation": i})
    if i == 0:
        print("ready", flush=True)
"""


def test_load_while_another_process_saves(tmp_path):
    folder = tmp_path / "m"
    # cwd: not the source tree, whose microcnn/ has no compiled _core (a non-editable install)
    with subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True,
                          cwd=tmp_path) as writer:
        try:
            assert writer.stdout.readline() == "ready\n"
            loads, deadline = 0, time.monotonic() + 3.0
            while time.monotonic() < deadline or loads < 50:
                model = microcnn.load_model(folder)
                values = {float(v) for w in model.get_weights() for v in np.unique(w)}
                assert values == {float(model.metadata["generation"])}
                loads += 1
        finally:
            writer.kill()
