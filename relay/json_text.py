"""JSON string literals for the per-frame builders: cheap when nothing needs escaping.

Pure: standard library only.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii


def json_string(text: str) -> str:
    """``text`` as a JSON string literal.

    Base64 audio never needs escaping, and the C escaper costs about 38 instructions a
    character (240,000 for a 200 ms audio delta), so plain ASCII without quotes or
    backslashes is wrapped as it is (about 0.3 instructions a character); anything else
    still goes through the escaper. A raw control character would pass unescaped here: it
    cannot end the string (Twilio or OpenAI would reject that one message), and base64
    never contains one.
    """
    if text.isascii() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return encode_basestring_ascii(text)
