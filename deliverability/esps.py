"""What each transport needs in DNS and from the recipient's IT: one table, no `if` chains.

Values are the ESPs' published defaults; an account can differ (SendGrid's automated
security, a custom MAIL FROM on Amazon SES), which is why a sending domain can override the
SPF include and names its own DKIM CNAME targets and return-path target.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class Transport(models.TextChoices):
    SMTP = "smtp", "Direct SMTP (our sending IPs)"
    AMAZON_SES = "amazon_ses", "Amazon SES"
    BREVO = "brevo", "Brevo"
    MAILGUN = "mailgun", "Mailgun"
    MAILJET = "mailjet", "Mailjet"
    MANDRILL = "mandrill", "Mandrill"
    POSTMARK = "postmark", "Postmark"
    RESEND = "resend", "Resend"
    SENDGRID = "sendgrid", "SendGrid"
    SPARKPOST = "sparkpost", "SparkPost"
    OTHER = "other", "Another anymail ESP"


@dataclass(frozen=True)
class Esp:
    spf_include: str
    envelope_domain: str
    dkim: str
    allowlist: str


ESPS: dict[str, Esp] = {
    Transport.AMAZON_SES: Esp(
        spf_include="amazonses.com",
        envelope_domain="amazonses.com",
        dkim="Easy DKIM: three CNAMEs <token>._domainkey → <token>.dkim.amazonses.com.",
        allowlist="Amazon SES sends from AWS address ranges (ip-ranges.json, service AMAZON) with "
        "envelope domain amazonses.com, or your custom MAIL FROM domain; allowlist the domain, not IPs.",
    ),
    Transport.BREVO: Esp(
        spf_include="spf.brevo.com",
        envelope_domain="brevo.com",
        dkim="Two CNAMEs, brevo1._domainkey and brevo2._domainkey, with the targets Brevo shows.",
        allowlist="Brevo publishes its sending ranges in its help centre (article 'IP addresses to "
        "allowlist'); a dedicated IP is listed in your account.",
    ),
    Transport.MAILGUN: Esp(
        spf_include="mailgun.org",
        envelope_domain="mailgun.org",
        dkim="A TXT record at the selector Mailgun shows (for example pic._domainkey), or a CNAME "
        "when automatic sender security is on.",
        allowlist="Mailgun sends from its shared pools (SPF include mailgun.org) or your dedicated "
        "IPs, listed under Sending → IPs.",
    ),
    Transport.MAILJET: Esp(
        spf_include="spf.mailjet.com",
        envelope_domain="mailjet.com",
        dkim="A TXT record at mailjet._domainkey with the key Mailjet shows.",
        allowlist="Mailjet's ranges are those of the SPF include spf.mailjet.com.",
    ),
    Transport.MANDRILL: Esp(
        spf_include="spf.mandrillapp.com",
        envelope_domain="mandrillapp.com",
        dkim="CNAMEs mte1._domainkey → dkim1.mandrillapp.com and mte2._domainkey → dkim2.mandrillapp.com.",
        allowlist="Mandrill's ranges are those of the SPF include spf.mandrillapp.com.",
    ),
    Transport.POSTMARK: Esp(
        spf_include="spf.mtasv.net",
        envelope_domain="mtasv.net",
        dkim="A TXT record at <date>pm._domainkey with the key Postmark shows.",
        allowlist="Postmark publishes its sending IPs (postmarkapp.com/support, 'IP addresses for "
        "firewalls'); the envelope domain is pm.mtasv.net or your custom return path.",
    ),
    Transport.RESEND: Esp(
        spf_include="amazonses.com",
        envelope_domain="amazonses.com",
        dkim="A TXT record at resend._domainkey with the key Resend shows.",
        allowlist="Resend sends through Amazon SES ranges; allowlist your return-path domain.",
    ),
    Transport.SENDGRID: Esp(
        spf_include="sendgrid.net",
        envelope_domain="sendgrid.net",
        dkim="CNAMEs s1._domainkey and s2._domainkey → s1/s2.domainkey.u<account>.wl<n>.sendgrid.net.",
        allowlist="SendGrid sends from shared ranges or your dedicated IPs (Settings → IP "
        "Addresses); envelope domain sendgrid.net or your em<n> subdomain.",
    ),
    Transport.SPARKPOST: Esp(
        spf_include="_spf.sparkpostmail.com",
        envelope_domain="sparkpostmail.com",
        dkim="A TXT record at scph<date>._domainkey with the key SparkPost shows.",
        allowlist="SparkPost's ranges are those of the SPF include _spf.sparkpostmail.com; the "
        "envelope domain is sparkpostmail.com or your bounce domain.",
    ),
    Transport.OTHER: Esp(
        spf_include="",
        envelope_domain="",
        dkim="The DKIM records your ESP shows in its domain settings.",
        allowlist="Ask your ESP for its published sending ranges and envelope domain.",
    ),
}
