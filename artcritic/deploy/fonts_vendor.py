"""Vendor the self-hosted fonts into static/fonts from fontsource npm tarballs (run by hand).

    npm pack @fontsource/noto-sans@5.3.0 @fontsource/noto-sans-sc@5.3.1 \
        @fontsource/noto-sans-kr@5.3.0 @fontsource/noto-emoji@5.3.2
    python artcritic/deploy/fonts_vendor.py <folder with the three .tgz files>

Latin: Noto Sans 400 and 600 (latin, latin-ext). CJK: Noto Sans SC 400 in its ~100
unicode-range slices (Han, kana and common Hangul), family "Artcritic CJK"; Noto Sans KR 400 for the
rest of Hangul, family "Artcritic Hangul". Emoji: Noto
Emoji 400 (monochrome, ~1 MB, where colour would be ~9 MB), family "Artcritic Emoji". A
browser downloads only the slices of the characters a page shows. Licences: SIL OFL 1.1,
copied beside the files.
"""

from __future__ import annotations

import re
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "static" / "fonts"
FACE = re.compile(r"@font-face \{.*?\}", re.DOTALL)


def _faces(css: str, family: str, keep: re.Pattern[str], folder: str) -> list[str]:
    faces = []
    for block in FACE.findall(css):
        files = re.findall(r"url\(\./files/([^)]+\.woff2)\)", block)
        if not files or not keep.search(files[0]):
            continue
        name = files[0]
        weight = re.search(r"font-weight: (\d+)", block)
        ranges = re.search(r"unicode-range: ([^;]+);", block)
        faces.append(
            "@font-face {\n"
            f"  font-family: '{family}';\n  font-style: normal;\n  font-display: swap;\n"
            f"  font-weight: {weight.group(1) if weight else 400};\n"
            f"  src: url('{folder}/{name}') format('woff2');\n"
            + (f"  unicode-range: {ranges.group(1)};\n" if ranges else "")
            + "}"
        )
    return faces


def main(source: Path) -> None:
    plan = [
        ("noto-sans-5", "Noto Sans", ("400.css", "600.css"), r"^noto-sans-latin(-ext)?-\d+-normal"),
        ("noto-sans-sc-5", "Artcritic CJK", ("400.css",), r"^noto-sans-sc-\d+-400-normal"),
        ("noto-sans-kr-5", "Artcritic Hangul", ("400.css",), r"^noto-sans-kr-\d+-400-normal"),
        ("noto-emoji-5", "Artcritic Emoji", ("400.css",), r"^noto-emoji-\d+-400-normal"),
    ]
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    css = ["/* Self-hosted fonts (artcritic/deploy/fonts_vendor.py); SIL OFL 1.1: LICENSE-*. */"]
    for prefix, family, sheets, pattern in plan:
        (tgz,) = sorted(source.glob(f"fontsource-{prefix}*.tgz"))
        folder = prefix.removesuffix("-5")
        (OUT / folder).mkdir()
        with tarfile.open(tgz) as archive:
            members = {m.name.removeprefix("package/"): m for m in archive.getmembers()}
            text = "".join(archive.extractfile(members[s]).read().decode() for s in sheets)  # type: ignore[union-attr]
            faces = _faces(text, family, re.compile(pattern), folder)
            for face in faces:
                name = re.search(r"url\('[^/]+/([^']+)'\)", face).group(1)  # type: ignore[union-attr]
                data = archive.extractfile(members[f"files/{name}"]).read()  # type: ignore[union-attr]
                (OUT / folder / name).write_bytes(data)
            licence = archive.extractfile(members["LICENSE"]).read()  # type: ignore[union-attr]
            (OUT / f"LICENSE-{folder}.txt").write_bytes(licence)
        css.extend(faces)
    (OUT / "fonts.css").write_text("\n".join(css) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
