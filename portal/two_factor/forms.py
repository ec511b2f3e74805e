from django import forms
from django.contrib.auth import get_user_model


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Authentication code",
        max_length=32,
        strip=True,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "autofocus": True,
                "autocapitalize": "off",
                "spellcheck": "false",
                "size": 20,
            }
        ),
        help_text="The six digits your authenticator app shows now.",
    )


class ResetForm(forms.Form):
    """A superuser picks whose two-factor sign-in to reset."""

    username = forms.CharField(label="User name", max_length=150, strip=True)

    def clean_username(self) -> str:
        name = self.cleaned_data["username"]
        model = get_user_model()
        if not model.objects.filter(**{model.USERNAME_FIELD: name}).exists():
            raise forms.ValidationError(
                f"No user is named “{name}”: check the spelling on the Users page."
            )
        return name
