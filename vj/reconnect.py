"""The one policy every live input and output follows when its device, stream or receiver goes away: it counts as
lost after STALL_SECONDS without data, is reopened at once, then every RETRY_SECONDS, and the show goes on."""

RETRY_SECONDS = 1.0  # pause between attempts to reopen a lost device, stream or receiver (the first is at once)
STALL_SECONDS = 2.0  # a running source that delivers nothing for this long counts as lost
