"""Card-number checks for the sandbox. The number itself is never stored."""


def is_luhn_valid(number: str) -> bool:
    """Check the Luhn digit of a 13 to 19 digit card number."""
    if not number.isdigit() or not 13 <= len(number) <= 19:
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def brand_of(number: str) -> str:
    """Name the card brand from the leading digits."""
    if number.startswith("4"):
        return "Visa"
    if number[:2] in {"34", "37"}:
        return "American Express"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "MasterCard"
    if number.startswith(("6011", "65")) or "644" <= number[:3] <= "649":
        return "Discover"
    return "Unknown"
