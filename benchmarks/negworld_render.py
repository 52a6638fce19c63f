"""NegWorld rendering and export speed (target: >= 2,000 images/s per core at 64 px).

    python benchmarks/negworld_render.py [--images 2000] [--size 64] [--out benchmarks/results/negworld_render.json]

Per-core rates are measured as CPU time of this process (time.process_time), so other work on
a shared machine does not count against them; wall-clock rates are printed beside them. Rows:
the stages one by one in memory (sample, render, PNG encode with our encoder and with PIL's
save side by side, captions + VQA), then the whole `build_world` export to a temporary folder
(images, all JSON files, fsyncs), which is what `negationclip world build` runs, and the cost
of creating one small file on the chosen filesystem (on some machines /tmp costs ~1 ms a file).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from negationclip.data.negworld import WorldConfig, build_world, captions, questions, render  # noqa: E402
from negationclip.data.negworld.render import encode_png  # noqa: E402
from negationclip.data.negworld.scenes import sample_scene, scene_rng  # noqa: E402


def _timed(fn, n: int) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return (time.process_time() - c0) / n, (time.perf_counter() - w0) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="scenes per measurement")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "negworld_render.json"),
                    help="where to write the JSON record")
    ap.add_argument("--workdir", default=None,
                    help="folder for the temporary export (default: beside --out); file creation "
                         "cost differs a lot between filesystems, see the 'create one small file' row")
    args = ap.parse_args(argv)
    n = args.images
    cfg = WorldConfig(images=n, seed=0, size=args.size)
    scenes: list = []
    images: list = []
    rows = []

    def add(stage, fn):
        cpu, wall = _timed(fn, n)
        rows.append({"stage": stage, "us_per_image_cpu": cpu * 1e6, "images_per_s_per_core": 1 / cpu,
                     "images_per_s_wall": 1 / wall})

    add("sample scene graph", lambda: scenes.extend(sample_scene(cfg, i, i) for i in range(1, n + 1)))
    add(f"render {args.size}px (2x supersampled)", lambda: images.extend(render(s) for s in scenes))
    add("PNG encode (negworld encoder)", lambda: [encode_png(im) for im in images])
    add("PNG encode (PIL save, level 1)",
        lambda: [im.save(io.BytesIO(), format="PNG", compress_level=1) for im in images])
    add("captions + VQA questions", lambda: [(captions(s, scene_rng(0, s.id, "c")),
                                              questions(s, scene_rng(0, s.id, "q"))) for s in scenes])
    out_dir = Path(args.workdir or Path(args.out).parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".negworld_bench.") as tmp:
        fd = Path(tmp) / "files"
        fd.mkdir()
        add("create one small file (this filesystem)",
            lambda: [(fd / f"{i:06d}.png").write_bytes(b"x" * 400) for i in range(n)])
        man = {}
        add("full build_world export (to disk)",
            lambda: man.update(build_world(Path(tmp) / "w", cfg, show_progress=False)))
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm, prefix="negworld_bench.") as tmp:
            add("full build_world export (tmpfs /dev/shm)",
                lambda: build_world(Path(tmp) / "w", cfg, show_progress=False))
    own = next(r for r in rows if r["stage"].startswith("PNG encode (negworld"))
    pil = next(r for r in rows if r["stage"].startswith("PNG encode (PIL"))
    ratio = pil["us_per_image_cpu"] / own["us_per_image_cpu"]
    print_table(rows, ["stage", "us_per_image_cpu", "images_per_s_per_core", "images_per_s_wall"])
    print(f"\nPNG encoder speed-up over PIL save: {ratio:.2f}x")
    best = max((r for r in rows if r["stage"].startswith("full")), key=lambda r: r["images_per_s_per_core"])
    for r in rows:
        if r["stage"].startswith("full"):
            print(f"{r['stage']}: {r['images_per_s_per_core']:.0f} images/s per core "
                  f"(target >= 2000: {'met' if r['images_per_s_per_core'] >= 2000 else 'NOT met'})")
    print(f"each export also renders {man['counts']['foil_images']} foil images for "
          f"{man['counts']['negation_pairs']} negation pairs on top of the {n} scenes")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None:
        print(f"1-minute load average during the run: {load:.1f} on {os.cpu_count()} cores "
              f"(a loaded machine slows every row, CPU time included)")
    write_json(args.out, {"benchmark": "negworld_render", "images": n, "size": args.size,
                          "load_average_1min": load,
                          "rows": rows, "png_speedup_vs_pil": ratio,
                          "target_images_per_s_per_core": 2000,
                          "met": {r["stage"]: r["images_per_s_per_core"] >= 2000
                                  for r in rows if r["stage"].startswith("full")},
                          "best_full_images_per_s_per_core": best["images_per_s_per_core"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
