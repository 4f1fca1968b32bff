"""The latency router (Aviator, after Prequal): replica-side probe answers now; the proxy and the AviatorPolicy
controller land with the router issue."""
