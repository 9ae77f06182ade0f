"""What crm tells other apps (crm imports neither campaigns nor deliverability)."""

from django.dispatch import Signal

# Someone unsubscribed through the link in a message. Arguments: send_id (the message's send,
# or None), email (normalized address), everything (True: from all marketing email), now.
unsubscribed_by_link = Signal()
