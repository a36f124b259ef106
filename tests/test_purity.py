import subprocess
import sys


def test_pure_modules_import_no_heavy_frameworks():
    code = (
        "import sys, refinex_datatrove, refinex_datatrove.program, refinex_datatrove.distill\n"
        "import refinex_datatrove.metadata, refinex_datatrove.labels, refinex_datatrove.annotate\n"
        "import refinex_datatrove.program.executor, refinex_datatrove.program.parser\n"
        "try:\n    import refinex_datatrove.distill.to_program, refinex_datatrove.distill.align\n"
        "except ImportError:\n    pass\n"
        "bad = sorted(m for m in ('datatrove', 'torch', 'transformers', 'vllm', 'trl') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
