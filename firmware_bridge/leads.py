"""Leads, electrodes and which lead depends on which electrode: the one definition for the whole appliance.

Why here: this is the lowest module of the lowest package. The wire layer (frame status bits, derived
limb leads), the signal chain (quality gate, model contract), the display and storage all name leads
and electrodes; defining them once below all of them means they cannot drift apart, and the import
direction (edge_app -> firmware_bridge) stays one way.

Vocabulary:
- CHANNELS: the 8 channels an ADS1298-class front end measures, in wire order.
- LEADS: the 12 standard leads in PTB-XL order, the order used everywhere above the wire.
- ELECTRODES: electrodes with a lead-off comparator, in status-bit order (RL is the driven
  right-leg electrode and is not sensed).
- LEAD_ELECTRODES: the electrodes each lead depends on. Chest leads are measured against Wilson's
  central terminal (mean of RA, LA, LL), so a limb electrode disturbs every chest lead too.
- ELECTRODE_LEADS: the inverse map, the leads a detached electrode disturbs.
"""
from __future__ import annotations

#: The 8 measured channels, in wire order.
CHANNELS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
#: The 12 standard leads, in PTB-XL order.
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF",
                          "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_LEADS: tuple[str, ...] = LEADS[:6]
CHEST_LEADS: tuple[str, ...] = LEADS[6:]
#: Electrodes with a lead-off comparator, in status-bit order (bit i = ELECTRODES[i]).
ELECTRODES: tuple[str, ...] = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")
#: The limb electrodes: Wilson's central terminal is their mean.
LIMB_ELECTRODES: tuple[str, ...] = ELECTRODES[:3]

#: Electrodes each lead depends on.
LEAD_ELECTRODES: dict[str, tuple[str, ...]] = {
    "I": ("RA", "LA"), "II": ("RA", "LL"), "III": ("LA", "LL"),
    "aVR": LIMB_ELECTRODES, "aVL": LIMB_ELECTRODES, "aVF": LIMB_ELECTRODES,
    **{v: (v, *LIMB_ELECTRODES) for v in CHEST_LEADS},
}
#: Leads disturbed by each electrode (inverse of LEAD_ELECTRODES, LEADS order).
ELECTRODE_LEADS: dict[str, tuple[str, ...]] = {
    e: tuple(lead for lead in LEADS if e in LEAD_ELECTRODES[lead]) for e in ELECTRODES}

#: Spellings found in real WFDB headers for the standard leads (case-insensitive, exact match only).
#: Only true synonyms: an unknown name such as "X6" is never guessed to be V6.
_SYNONYMS: dict[str, str] = {
    **{lead.upper(): lead for lead in LEADS},
    "AVR": "aVR", "AVL": "aVL", "AVF": "aVF",
    "MLI": "I", "MLII": "II", "MLIII": "III",
    "LEAD I": "I", "LEAD II": "II", "LEAD III": "III",
}


def canonical_lead(name: str) -> str | None:
    """A WFDB signal name -> the standard lead it is ('avr' -> 'aVR', 'MLII' -> 'II'), else None.

    Exact (case-insensitive, surrounding blanks ignored) on purpose: a lead named 'X6' or 'V7' is not
    a standard lead, and mapping it by similarity would analyse the wrong signal as V6.
    """
    return _SYNONYMS.get(str(name).strip().upper())
