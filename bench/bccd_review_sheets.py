"""Contact sheets of BCCD's 72 test images with their annotated WBC boxes drawn (green), to
review the WBC labels by eye: what found the 4 unboxed WBCs of `bench/bccd_wbc_review.csv`.

    .venv/bin/python bench/bccd_review_sheets.py --out runs/bccd_review   # 3 PNGs of 24 images
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import CLASSES, DATA  # noqa: E402

from medsight.data.sources import from_voc  # noqa: E402

TILE = (256, 192)
PER_SHEET, COLUMNS = 24, 4


def sheets(out: Path) -> list[Path]:
    test = from_voc(DATA, classes=CLASSES).split("test")
    wbc = CLASSES.index("WBC")
    written = []
    for first in range(0, len(test), PER_SHEET):
        sheet = Image.new("RGB", (COLUMNS * TILE[0], PER_SHEET // COLUMNS * TILE[1]), "white")
        for j, rec in enumerate(test.records[first:first + PER_SHEET]):
            im = Image.open(rec.ref).convert("RGB")
            draw = ImageDraw.Draw(im)
            for box, label in zip(rec.boxes.xyxy, rec.boxes.labels, strict=True):
                if label == wbc:
                    draw.rectangle([round(v) for v in box], outline=(0, 255, 0), width=8)
            im = im.resize(TILE)
            ImageDraw.Draw(im).text((4, 4), Path(rec.ref).stem, fill=(255, 0, 0))
            sheet.paste(im, ((j % COLUMNS) * TILE[0], (j // COLUMNS) * TILE[1]))
        path = out / f"bccd_test_wbc_{first // PER_SHEET + 1}.png"
        sheet.save(path)
        written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sheets(args.out):
        print(path)


if __name__ == "__main__":
    main()
