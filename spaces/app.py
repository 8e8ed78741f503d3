"""The Hugging Face Space's entry: the lab's app (``lab.ui.app``), set up for a Space by ``lab.space.prepare``.

LAB_HOME goes on the persistent storage (/data) when the Space has some, training is off without a GPU (unless
LAB_NO_TRAINING is set empty or 0), and with LAB_SYNC_REPO set, votes and dataset versions are pushed to that
Hub dataset on a schedule. See docs/space.md in the lab's repository.
"""

import os

from lab import space


def cuda_available() -> bool:
    import torch  # only here: the app itself starts without torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    space.prepare(os.environ, cuda=cuda_available())
    from lab.home import lab_home
    from lab.ui.app import main

    space.start_sync(lab_home())
    main([])
