// No WebRTC in a datacenter swarm: webtorrent and bittorrent-tracker only feature-test these.
export const RTCPeerConnection = undefined;
export const RTCSessionDescription = undefined;
export const RTCIceCandidate = undefined;
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate };
