"""The edge runs without torch: importing it and running a whole selection never loads torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_edge_import_and_pipeline_leave_torch_out(graphs):
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import edge
        import edge.runtime, edge.segmenter, edge.importance, edge.complexity
        import edge.recoverability, edge.sampler, edge.pipeline
        from edge.pipeline import EdgePipeline, PipelineConfig
        from edge.sampler import BudgetConfig

        # the shipped defaults: the two-layer encoder (wire v2) with its block means and range coding
        cfg = PipelineConfig(budget=BudgetConfig("bytes", 600))
        cfg.recoverability.scorer = {str(graphs["scorer"])!r}
        cfg.segmenter.hog_upscale = 1.0
        img = np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8)
        with EdgePipeline.from_config(cfg) as pipe:
            sel = pipe.select(img)
        assert sel.size_bytes <= 600 and sel.coarse is not None and sel.dc is not None, sel.size_bytes
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("TORCH:", loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "TORCH: []" in out.stdout
