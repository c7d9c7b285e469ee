"""Runs `two-stream train` with a callback that stops the process at a chosen optimizer step.

    KILL_AT_STEP=6 KILL_MODE=self python tests/train_until_killed.py --stream=spatial ...

KILL_MODE "self": SIGKILL itself once the optimizer has done KILL_AT_STEP steps (after that batch's
backup was written: the callback runs after the run's own). "wait": write the file READY_FILE and sleep
until the test kills it (to try things while it holds the run folder). Without KILL_AT_STEP the run
trains normally.
"""
import os
import pathlib
import signal
import sys
import time

import keras

from two_stream_tf import cli

KILL_AT = int(os.environ.get("KILL_AT_STEP", "0"))
MODE = os.environ.get("KILL_MODE", "self")


class _StopAtStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if KILL_AT and int(self.model.optimizer.iterations.numpy()) >= KILL_AT:
            if MODE == "wait":
                pathlib.Path(os.environ["READY_FILE"]).write_text(str(os.getpid()))
                while True:
                    time.sleep(1)
            os.kill(os.getpid(), signal.SIGKILL)


_fit = keras.Model.fit


def _fit_with_stop(self, *args, callbacks=None, **kwargs):
    return _fit(self, *args, callbacks=list(callbacks or []) + [_StopAtStep()], **kwargs)


keras.Model.fit = _fit_with_stop

if __name__ == "__main__":
    sys.exit(cli.main(["train"] + sys.argv[1:]))
