export default function Probe() { return null; }
