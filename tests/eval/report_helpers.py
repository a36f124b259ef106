"""Shared fixtures for the report tests: documents with hostile markup and an HTML walker."""

from __future__ import annotations

from html.parser import HTMLParser

from refinex_datatrove.program import RENDER_FORMAT


HOSTILE_ID = '<img src=x onerror="alert(1)">'
HOSTILE_TEXT = (
    "Menu <b>Home</b> | About\n"
    "Real content that stays.\n"
    'Click <script>alert("x")</script> here for more.\n'
    "</pre><iframe src='http://example.invalid'></iframe> footer"
)
HOSTILE_PROGRAM = 'remove_lines(1, 1)\nremove_str(3, "<script>alert(\\"x\\")</script> ")\nremove_lines(4, 4)\nevil()'


def program(text: str, chunks: list[tuple[int, int, str]]) -> dict:
    return {
        "render": RENDER_FORMAT,
        "source": "test",
        "n_lines": text.count("\n") + 1,
        "chunks": [{"start": s, "n_lines": n, "skipped": False, "program": p} for s, n, p in chunks],
    }


def hostile_doc() -> dict:
    return {"id": HOSTILE_ID, "text": HOSTILE_TEXT, "program": program(HOSTILE_TEXT, [(0, 4, HOSTILE_PROGRAM)])}


class Walker(HTMLParser):
    """Collects tags, the text inside ``del.rx-del`` elements, and every attribute value."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.dels: list[str] = []
        self.del_titles: list[str] = []
        self.labels: list[str] = []
        self._in_del = 0
        self._in_label = False
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        d = dict(attrs)
        if tag == "del" and "rx-del" in (d.get("class") or ""):
            self._in_del += 1
            self.dels.append("")
            self.del_titles.append(d.get("title") or "")
        if tag == "span" and d.get("class") == "rx-call":
            self._in_label = True
            self.labels.append("")

    def handle_endtag(self, tag):
        if tag == "del" and self._in_del:
            self._in_del -= 1
        if tag == "span" and self._in_label:
            self._in_label = False

    def handle_data(self, data):
        if self._in_del:
            self.dels[-1] += data
        if self._in_label:
            self.labels[-1] += data


def walk(html_text: str) -> Walker:
    w = Walker()
    w.feed(html_text)
    w.close()
    return w
