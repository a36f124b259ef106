"""Train a refine model with TRL SFT: a thin wrapper around :mod:`refinex_datatrove.train.sft`.

Usage (from the repository root):

    python pipelines/train_refiner.py --config pipelines/configs/train_refiner.yaml \
        --dataset_path out/sft_records --output_dir runs/refiner
    python pipelines/train_refiner.py --config pipelines/configs/train_default_smollm2.yaml   # CPU, LoRA

Same as ``refinex train ...`` and ``python -m refinex_datatrove.train.sft ...``; every option of
``RefinexSFTArgs``, ``trl.SFTConfig`` and ``trl.ModelConfig`` can be set in the YAML file or on the command line.
"""

from __future__ import annotations

import sys

from refinex_datatrove.train.sft import cli


def main(argv: list[str] | None = None) -> int:
    cli(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
