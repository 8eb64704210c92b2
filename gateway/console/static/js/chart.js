// A throughput chart drawn on a canvas by hand: bars of bytes per second per time bin, with
// a labelled y axis and a time axis. The numbers are also given as text (aria-label and a
// caption) for screen readers.
import { bytes } from "./dom.js";

export function drawThroughput(canvas, data) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 800;
  const height = canvas.clientHeight || 220;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const samples = data.samples || [];
  g.font = "12px system-ui, sans-serif";
  g.fillStyle = "#4a4a4a";
  if (!samples.length) {
    g.fillText("No object verified yet: the chart fills in as the import copies.", 16, height / 2);
    canvas.setAttribute("aria-label", "Throughput chart: no data yet");
    return;
  }
  const left = 78;
  const bottom = height - 28;
  const top = 12;
  const right = width - 12;
  const peak = Math.max(...samples.map((s) => s.bytes_per_s), 1);
  g.strokeStyle = "#c8c8c8";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const y = bottom - ((bottom - top) * i) / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
    g.fillText(`${bytes((peak * i) / 4)}/s`, 4, y + 4);
  }
  const step = (right - left) / samples.length;
  g.fillStyle = "#0b57d0";
  samples.forEach((s, i) => {
    const barHeight = ((bottom - top) * s.bytes_per_s) / peak;
    g.fillRect(left + i * step + 1, bottom - barHeight, Math.max(1, step - 2), barHeight);
  });
  g.fillStyle = "#4a4a4a";
  const span = samples.length * data.bin_seconds;
  g.fillText("0 s", left, height - 10);
  g.fillText(`${Math.round(span)} s`, right - 40, height - 10);
  const total = samples.reduce((sum, s) => sum + s.bytes, 0);
  canvas.setAttribute("aria-label",
    `Throughput chart: ${samples.length} bins of ${data.bin_seconds} s, peak ${bytes(peak)}/s, ${bytes(total)} in all`);
}
