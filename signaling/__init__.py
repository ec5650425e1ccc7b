"""Socket.IO transport: WebRTC signaling, room presence and live case notes."""
