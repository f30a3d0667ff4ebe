"""Budget compliance: every packet at or under its bpp budget and how close to it (JSON on stdout).

    python benchmarks/budget_check.py IMAGE_DIR N
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from edge.pipeline import EdgePipeline, PipelineConfig
from edge.sampler import BudgetConfig

paths = sorted(Path(sys.argv[1]).glob("*.jpg"))[:int(sys.argv[2])]
rows = []
with EdgePipeline.from_config(PipelineConfig()) as pipe:
    for p in paths:
        im = np.asarray(Image.open(p).convert("RGB"))
        for bpp in (0.02, 0.05, 0.074, 0.1, 0.2):
            s = pipe.select(im, BudgetConfig(unit="bpp", value=bpp))
            rows.append({"image": p.name, "bpp": bpp, "limit": s.limit, "bytes": s.size_bytes, "ratio": s.size_bytes / s.limit})
r = np.array([x["ratio"] for x in rows])
print(json.dumps({"packets": len(rows), "over_budget": int((r > 1).sum()), "min_ratio": float(r.min()), "mean_ratio": float(r.mean()), "within_2pct": int((r >= 0.98).sum())}))
print([ (x["bpp"], x["limit"], x["bytes"]) for x in rows if x["ratio"] < 0.98])
