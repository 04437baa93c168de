from pistachio_infra.money import signed_usd, usd


def test_cents_from_a_dollar_fractions_of_a_cent_below():
    assert usd(12.345) == "$12.35"
    assert usd(0.0043) == "$0.0043"  # a sandbox run: "$0.00" would hide it
    assert signed_usd(-0.18, like=1.8) == "−$0.18"
    assert signed_usd(0.0012) == "+$0.0012"
