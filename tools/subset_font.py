"""Rebuild sim/fonts/NotoSansCJKsc-Regular-subset.otf from a full Noto Sans CJK SC font.

    python tools/subset_font.py PATH/TO/NotoSansCJKsc-Regular.otf
    python tools/subset_font.py /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc 2   # Debian's
                                                                   # fonts-noto-cjk; 2 = the SC face

Keeps the characters of the bundled models, the policy text, fiscalsim's sources (report labels),
scenarios and the README, each also as OpenCC converts it to Simplified and to Traditional Chinese (the
reports' scripts), plus Latin-1, full-width forms, CJK punctuation and the math signs matplotlib uses.
"""

import sys
from pathlib import Path

from fontTools import subset

ROOT = Path(__file__).resolve().parent.parent


def characters() -> str:
    text = set()
    import opencc

    for path in [*ROOT.joinpath("models").rglob("*.toml"), *ROOT.joinpath("models").rglob("*.txt"),
                 *ROOT.joinpath("scenarios").glob("*.toml"), *ROOT.joinpath("sim").glob("*.py"), ROOT / "README.md"]:
        content = path.read_text(encoding="utf-8")
        text |= set(content) | set(opencc.OpenCC("t2s").convert(content)) | set(opencc.OpenCC("s2t").convert(content))
    text |= {chr(c) for c in range(0x20, 0x7F)} | {chr(c) for c in range(0xA0, 0x100)}
    text |= {chr(c) for c in range(0xFF01, 0xFF5F)} | {chr(c) for c in range(0x3000, 0x3020)}
    text |= set("\u2212×±≤≥…—–·‰")
    return "".join(sorted(c for c in text if c == " " or not c.isspace()))


def main(source: str, number: int = 0) -> None:
    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.font_number = number
    font = subset.load_font(source, options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=characters())
    subsetter.subset(font)
    target = ROOT / "sim" / "fonts" / "NotoSansCJKsc-Regular-subset.otf"
    subset.save_font(font, str(target), options)
    print(f"{target}: {target.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
