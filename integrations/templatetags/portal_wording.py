"""`{% plain_reason item as why %}`: a review item's reason in plain words
(`why.plain`) and as recorded (`why.technical`); see `integrations.wording`."""

from django import template

from integrations import wording

register = template.Library()


@register.simple_tag
def plain_reason(item: wording.HasReason) -> dict[str, str]:
    plain, technical = wording.plain_reason(item)
    return {"plain": plain, "technical": technical}
