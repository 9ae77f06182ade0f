from __future__ import annotations

from django.core import signing
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from campaigns import links, pipeline
from campaigns.models import Send


@require_safe
def view_in_browser(request, token: str):
    """The message as its recipient got it; a stranger's guess shows a friendly page, nothing more."""
    try:
        send = Send.objects.select_related("campaign", "contact").filter(pk=links.read_view_token(token)).first()
    except signing.BadSignature:
        send = None
    if send is None or send.contact is None:
        return render(request, "campaigns/view_gone.html", status=404)
    return HttpResponse(pipeline.render_for(send.campaign, send.contact, send_id=send.pk).html)
