"""Train a refine model with TRL SFT: a thin wrapper around :mod:`refinex_datatrove.train.sft`.

Usage (from the repository root):

    python pipelines/train_refiner.py --config pipelines/configs/train_refiner.yaml \
        --dataset_path out/sft_records --output_dir runs/refiner
    python pipelines/train_refiner.py --config pipelines/configs/train_default_smollm2.yaml   # CPU, LoRA

Same as ``refinex train ...`` (with ``pipelines/configs/train_refiner.yaml`` when no ``--config`` is given); every
option of ``RefinexSFTArgs``, ``trl.SFTConfig`` and ``trl.ModelConfig`` can be set in the YAML file, with
``--set KEY=VALUE`` or as ``--KEY VALUE``. ``--dryrun`` prints the resolved options without training; ``--help``
lists the usual options, ``--help-all`` every one.
"""

from __future__ import annotations

import sys

from refinex_datatrove.train.sft import run_train_script


DEFAULT_CONFIG = "pipelines/configs/train_refiner.yaml"


def main(argv: list[str] | None = None) -> int:
    return run_train_script(list(sys.argv[1:] if argv is None else argv), "train_refiner.py", DEFAULT_CONFIG)


if __name__ == "__main__":
    sys.exit(main())
