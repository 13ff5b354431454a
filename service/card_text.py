"""Cards as a clinician reads them in a terminal (``back-knee-cds evaluate --format text``).

The EHR shows the summary first, the indicator as colour, the detail on demand, then the
suggestions as buttons; the text form keeps that order. Markdown escapes and emphasis are
removed, so the text reads as prose.
"""

from __future__ import annotations

import re
import textwrap

from service.cdshooks.models import Card

__all__ = ["card_text"]

_ESCAPED = re.compile(r"\\([\\`*_\[\]<>|~&])")


def card_text(card: Card) -> str:
    lines = [f"[{card.indicator.upper()}] {card.summary}"]
    if card.detail:
        lines.extend(textwrap.indent(_plain_markdown(card.detail), "    ").splitlines())
    if card.suggestions:
        lines.append(f"    Suggestions (choose {card.selectionBehavior}):")
        for suggestion in card.suggestions:
            marker = " [recommended]" if suggestion.isRecommended else ""
            lines.append(f"      * {suggestion.label}{marker}")
            for action in suggestion.actions or ():
                resource = action.resource or {}
                code = resource.get("code") or {}
                codings = ", ".join(f"{c.get('system')}|{c.get('code')} {c.get('display', '')}".strip() for c in code.get("coding", ()))
                lines.append(
                    f"        {action.type} {resource.get('resourceType', 'resource')} ({resource.get('status')}, "
                    f"{resource.get('intent')}): {code.get('text', '')}" + (f" [{codings}]" if codings else " [no code]")
                )
    for link in card.links or ():
        lines.append(f"    More: {link.url}")
    return "\n".join(lines)


def _plain_markdown(text: str) -> str:
    # Unescape first, so an escaped backtick or asterisk in patient data survives as text.
    parts = re.split(_ESCAPED, text)
    plain = [part.replace("**", "").replace("`", "") if index % 2 == 0 else part for index, part in enumerate(parts)]
    return "".join(plain)
