"""DCL (chingyaoc/DCL): the state dict of ``nn.DataParallel(Model)``, the same layout as HCL's.

Layout, from chingyaoc/DCL@7d6345f: main.py ``torch.save(model.state_dict(), ...)`` after
``model = nn.DataParallel(Model(feature_dim))``; model.py ``Model`` is the one HCL copied (see
:mod:`.hcl`). Inputs: utils.py normalises with CIFAR-10's mean and kuangliu's std. Never detected
(the keys are HCL's): read when named.
"""

from __future__ import annotations

from .base import Format
from .hcl import detect, read_model

NAME = "dcl"
SOURCE = "chingyaoc/DCL@7d6345f model.py, main.py"


def read(payload) -> tuple[dict, str]:
    return read_model(payload, NAME)


FORMAT = Format(NAME, SOURCE, detect, read, auto=False)
