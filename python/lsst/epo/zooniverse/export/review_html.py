# This file is part of epo_zooniverse.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""The HTML of the operators' review page.

Every page of `~lsst.epo.zooniverse.export.review_page.ReviewPage` is
built here, server-side, with every value escaped (`escape_html`): the
layout (`page_layout`), the login form, the list of quarantined batches
and a batch's page.  The one inline style sheet is allowed by its hash in
the strict ``Content-Security-Policy`` of `security_headers`; pages carry
no scripts.
"""

from __future__ import annotations

__all__ = [
    "batch_body",
    "batch_list_body",
    "batch_url",
    "escape_html",
    "format_data_id",
    "is_viewable",
    "login_body",
    "page_layout",
    "quote_segment",
    "security_headers",
]

import base64
import collections
import hashlib
import html
import json
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f6;color:#1d1d22}
header{background:#1d2b3a;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center}
header h1{font-size:1.2em;margin:0;flex:1}header a{color:#fff}
main{padding:1em;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:.5em 0}
th,td{border:1px solid #ccd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#e6e8ee}
.flash{padding:.5em 1em;margin:.5em 0;border-radius:4px}
.ok{background:#dff3e3}.error{background:#f8dcdc}
.sheet{max-width:100%;border:1px solid #889;background:#282828}
.thumb{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;background:#282828}
.finding{color:#8a2b00}
form.inline{display:inline}
button{padding:.35em .9em;margin:.2em .2em .2em 0;cursor:pointer}
button.approve{background:#2e7d32;color:#fff;border:0}
button.reject{background:#b3261e;color:#fff;border:0}
textarea{width:100%;max-width:40em}
.muted{color:#666}
""".strip()
_CSP = (
    "default-src 'none'; img-src 'self'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()}'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def escape_html(value: Any) -> str:
    """Escape anything for HTML text and attribute values.

    Parameters
    ----------
    value : `object`
        Value; `None` becomes an empty string.

    Returns
    -------
    text : `str`
        ``str(value)`` with ``&``, ``<``, ``>`` and both quotes escaped.
    """
    return html.escape("" if value is None else str(value), quote=True)


def quote_segment(value: str) -> str:
    """Percent-encode one URL path segment.

    Parameters
    ----------
    value : `str`
        The segment (a batch or entry name).

    Returns
    -------
    quoted : `str`
        ``value`` with everything but unreserved characters encoded,
        ``/`` included.
    """
    return urllib.parse.quote(value, safe="")


def batch_url(prefix: str, batch: str) -> str:
    """Return the path of a batch's page.

    Parameters
    ----------
    prefix : `str`
        URL prefix of the review page.
    batch : `str`
        Batch name.

    Returns
    -------
    path : `str`
        ``<prefix>batch/<batch>``, the name percent-encoded.
    """
    return f"{prefix}batch/{quote_segment(batch)}"


def format_data_id(batch: Mapping[str, Any]) -> str:
    """Return a batch's data id as ``key=value, ...``.

    Parameters
    ----------
    batch : `~collections.abc.Mapping`
        The batch; its ``data_id`` is JSON text.

    Returns
    -------
    text : `str`
        The data id's keys and values, or the text as it is if it is not
        a JSON object.
    """
    try:
        data_id = json.loads(batch["data_id"])
    except (TypeError, ValueError):
        return str(batch["data_id"])
    if isinstance(data_id, dict):
        return ", ".join(f"{k}={v}" for k, v in data_id.items())
    return str(data_id)


def is_viewable(image: Mapping[str, Any]) -> bool:
    """Tell whether the review page may show an image's picture.

    Parameters
    ----------
    image : `~collections.abc.Mapping`
        One image of a batch, as ``ExportService.review`` returns it.

    Returns
    -------
    viewable : `bool`
        `True` if the image has a quarantined file and is not rejected:
        rejected images may have failed validation (not decodable, too
        big), so they are never decoded.
    """
    return bool(image["quarantine_path"]) and image["state"] != "rejected"


def security_headers() -> list[tuple[str, str]]:
    """Return the header fields every review answer carries.

    Returns
    -------
    headers : `list` [`tuple` [`str`, `str`]]
        ``Cache-Control: no-store``, the strict
        ``Content-Security-Policy`` (the page's inline style allowed by
        its hash), ``X-Frame-Options`` and ``Referrer-Policy``.
    """
    return [
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", _CSP),
        ("X-Frame-Options", "DENY"),
        # Not "no-referrer": with it Chromium sends "Origin: null" on
        # the page's own form posts, which the review page refuses.
        ("Referrer-Policy", "same-origin"),
    ]


def page_layout(
    prefix: str,
    title: str,
    body: str,
    *,
    operator: str | None = None,
    csrf: str = "",
    flashes: Sequence[tuple[str, str]] = (),
) -> str:
    """Return a whole review page around its body.

    Parameters
    ----------
    prefix : `str`
        URL prefix of the review page.
    title : `str`
        Page title.
    body : `str`
        HTML of the page's main part.
    operator : `str`, optional
        Logged-in operator; shown with a logout button if given.
    csrf : `str`, optional
        The session's CSRF token, for the logout form.
    flashes : `~collections.abc.Sequence` [`tuple` [`str`, `str`]], optional
        Messages to show once, as ``(kind, text)`` (kind ``ok`` or
        ``error``).

    Returns
    -------
    page : `str`
        The HTML document; every value is escaped.
    """
    user = ""
    if operator is not None:
        user = (
            f'<span>Signed in as <b id="operator-name">{escape_html(operator)}</b></span>'
            f'<form class="inline" method="post" action="{escape_html(prefix)}logout">'
            f'<input type="hidden" name="csrf" value="{escape_html(csrf)}">'
            '<button type="submit" id="logout">Log out</button></form>'
        )
    flashes_html = "".join(
        f'<p class="flash {escape_html(kind)}">{escape_html(text)}</p>' for kind, text in flashes
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape_html(title)} - EPO review</title><style>{_CSS}</style></head>
<body><header><h1><a href="{escape_html(prefix)}">EPO export review</a></h1>{user}</header>
<main>{flashes_html}{body}</main></body></html>
"""


def login_body(prefix: str, nonce: str, message: str | None = None) -> str:
    """Return the body of the login form.

    Parameters
    ----------
    prefix : `str`
        URL prefix of the review page.
    nonce : `str`
        One-off value the form posts back (paired with a cookie).
    message : `str`, optional
        Error to show above the form.

    Returns
    -------
    body : `str`
        HTML of the form.
    """
    return f"""<h2>Operator login</h2>
{f'<p class="flash error">{escape_html(message)}</p>' if message else ""}
<form method="post" action="{escape_html(prefix)}login">
<input type="hidden" name="nonce" value="{escape_html(nonce)}">
<p><label>Operator name<br><input name="operator" id="operator" autocomplete="username" required></label></p>
<p><label>Token or password<br><input type="password" name="token" id="token"
 autocomplete="current-password" required></label></p>
<p><button type="submit" id="login">Log in</button></p>
</form>"""


def batch_list_body(prefix: str, batches: Sequence[Mapping[str, Any]], csrf: str) -> str:
    """Return the body of the list of quarantined batches.

    Parameters
    ----------
    prefix : `str`
        URL prefix of the review page.
    batches : `~collections.abc.Sequence` [`~collections.abc.Mapping`]
        The batches, as ``ExportService.review`` returns them.
    csrf : `str`
        The session's CSRF token, for the publish form.

    Returns
    -------
    body : `str`
        HTML: a table of the batches with their findings, and the publish
        button.
    """
    rows = []
    for b in batches:
        counts = collections.Counter(image["state"] for image in b["images"])
        findings = [image for image in b["images"] if image["reason"]]
        finding_items = "".join(
            f'<li><span class="muted">{escape_html(i["entry"])}</span> {escape_html(i["state"])}: '
            f'<span class="finding">{escape_html(i["reason"])}</span></li>'
            for i in findings[:20]
        )
        if len(findings) > 20:
            finding_items += f"<li>... and {len(findings) - 20} more (see the batch page)</li>"
        rows.append(
            "<tr>"
            f"<td>{escape_html(b['project'])}</td>"
            f'<td><a class="batch-link" href="{escape_html(batch_url(prefix, b["batch"]))}">'
            f"{escape_html(b['batch'])}</a></td>"
            f"<td>{escape_html(b['run'])}</td>"
            f"<td>{escape_html(b['dataset_type'])}<br>"
            f"<span class='muted'>{escape_html(format_data_id(b))}</span></td>"
            f"<td>{escape_html(', '.join(f'{n} {s}' for s, n in sorted(counts.items())))}</td>"
            f"<td>{escape_html(b['reason'] or '')}<ul>{finding_items}</ul></td>"
            "</tr>"
        )
    table = (
        "<table id='batches'><thead><tr><th>Project</th><th>Batch</th><th>Collection</th>"
        "<th>Dataset</th><th>Images</th><th>Findings</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else "<p id='empty'>Nothing in quarantine.</p>"
    )
    publish = f"""<h2>Publication</h2>
<p>Approved images are published by <code>zooniverse-epo publish</code> (run it, or a scheduled job), or
now with this button; the approved batches' images then appear at their public URLs.</p>
<form method="post" action="{escape_html(prefix)}publish">
<input type="hidden" name="csrf" value="{escape_html(csrf)}">
<button type="submit" id="publish">Publish approved images now</button></form>"""
    return f"<h2>Quarantined batches ({len(batches)})</h2>{table}{publish}"


def batch_body(
    prefix: str, batch: str, record: Mapping[str, Any], page: int, page_size: int, csrf: str
) -> str:
    """Return the body of one batch's page.

    Parameters
    ----------
    prefix : `str`
        URL prefix of the review page.
    batch : `str`
        Batch name.
    record : `~collections.abc.Mapping`
        The batch, as ``ExportService.review`` returns it.
    page : `int`
        Page of images to show (1 is the first; a larger number than there
        are pages shows the last).
    page_size : `int`
        Images per page.
    csrf : `str`
        The session's CSRF token, for the decision form.

    Returns
    -------
    body : `str`
        HTML: the batch's details, contact sheet, decision form and one
        page of images.
    """
    # Long by its docstring and one HTML template.
    images = record["images"]
    counts = collections.Counter(image["state"] for image in images)
    pages = max(1, math.ceil(len(images) / page_size))
    page = min(page, pages)
    shown = images[(page - 1) * page_size : page * page_size]
    base = batch_url(prefix, batch)
    can_approve = record["state"] == "quarantined"
    can_reject = record["state"] in ("quarantined", "approved")
    rows = []
    for image in shown:
        entry = image["entry"]
        viewable = is_viewable(image)
        tick = (
            f'<input type="checkbox" name="entry" value="{escape_html(entry)}" form="decide" '
            f'aria-label="select {escape_html(entry)}">'
            if image["state"] in ("quarantined", "approved") and (can_approve or can_reject)
            else ""
        )
        picture = (
            f'<a href="{escape_html(base)}/image/{escape_html(quote_segment(entry))}">'
            '<img class="thumb" loading="lazy" '
            f'src="{escape_html(base)}/thumb/{escape_html(quote_segment(entry))}" '
            f'alt="{escape_html(entry)}"></a>'
            if viewable
            else '<span class="muted">no picture</span>'
        )
        rows.append(
            "<tr>"
            f"<td>{tick}</td><td>{picture}</td><td>{escape_html(entry)}</td>"
            f"<td>{escape_html(image['object_id'])}</td>"
            f"<td>{escape_html(image['width'])}x{escape_html(image['height'])}<br>"
            f"{escape_html(image['size'])} bytes</td>"
            f"<td class='state'>{escape_html(image['state'])}</td>"
            f"<td class='finding'>{escape_html(image['reason'] or '')}</td>"
            "</tr>"
        )
    nav = ""
    if pages > 1:
        links = []
        for n in range(1, pages + 1):
            links.append(f"<b>{n}</b>" if n == page else f'<a href="{escape_html(base)}?page={n}">{n}</a>')
        nav = "<p>Pages: " + " ".join(links) + "</p>"
    sheet = (
        f'<p><img class="sheet" id="contact-sheet" src="{escape_html(base)}/contact-sheet.png" '
        f'alt="contact sheet of {escape_html(batch)}"></p>'
        if any(is_viewable(image) for image in images)
        else "<p>No pictures to show.</p>"
    )
    buttons = ""
    if can_approve or can_reject:
        approve_button = '<button type="submit" class="approve" id="approve">Approve</button>'
        reject_button = (
            f'<button type="submit" class="reject" id="reject" formaction="{escape_html(base)}/reject">'
            "Reject</button>"
        )
        buttons = f"""<form id="decide" method="post" action="{escape_html(base)}/approve">
<input type="hidden" name="csrf" value="{escape_html(csrf)}">
<p><label>Reason (recorded in the audit log and sent to the PI; required to reject)<br>
<textarea name="reason" id="reason" rows="2"></textarea></label></p>
<p>With no image ticked, the decision applies to the whole batch; otherwise to the ticked images.</p>
<p>{approve_button if can_approve else ""} {reject_button if can_reject else ""}</p>
</form>"""
    data_id = escape_html(format_data_id(record))
    return f"""<h2>Batch <span id="batch-name">{escape_html(batch)}</span></h2>
<table><tr><th>Project</th><td>{escape_html(record["project"])}</td></tr>
<tr><th>State</th><td id="batch-state">{escape_html(record["state"])}</td></tr>
<tr><th>Collection</th><td>{escape_html(record["run"])}</td></tr>
<tr><th>Dataset</th><td>{escape_html(record["dataset_type"])} ({data_id})</td></tr>
<tr><th>Images</th><td>{escape_html(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))}</td></tr>
<tr><th>Findings</th><td class="finding">{escape_html(record["reason"] or "")}</td></tr></table>
{sheet}{buttons}{nav}
<table id="images"><thead><tr><th></th><th>Picture</th><th>Entry</th><th>Object</th><th>Size</th>
<th>State</th><th>Findings</th></tr></thead><tbody>{"".join(rows)}</tbody></table>{nav}"""
