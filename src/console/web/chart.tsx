import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface Point {
  /** epoch seconds */
  x: number;
  y: number;
}

/**
 * A time series with uPlot (canvas, ~50 KB): fast enough to redraw on every
 * live reading. `points` is the whole series; the chart redraws when it changes.
 */
export function TimeChart({
  points,
  label,
  testid,
  range,
}: {
  points: Point[];
  label: string;
  testid: string;
  /** The x range in epoch seconds (a history query's from/to); default: the data's. */
  range?: [number, number];
}) {
  const xRange = useRef(range);
  xRange.current = range;
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const data = (): uPlot.AlignedData => [points.map((p) => p.x), points.map((p) => p.y)];
  useEffect(() => {
    const el = box.current!;
    plot.current = new uPlot(
      {
        width: Math.max(320, el.clientWidth || 800),
        height: 260,
        series: [{}, { label, stroke: '#2563eb', width: 2, points: { show: true, size: 5 } }],
        scales: {
          x: {
            time: true,
            range: (_u, min, max) => xRange.current ?? (min === max ? [min - 60, max + 60] : [min, max]),
          },
        },
        axes: [{}, { size: 60 }],
      },
      data(),
      el,
    );
    return () => plot.current?.destroy();
  }, [label]);
  useEffect(() => {
    plot.current?.setData(data());
  }, [points, range?.[0], range?.[1]]);
  return (
    <div
      ref={box}
      class="chart"
      data-testid={testid}
      data-points={points.length}
      role="img"
      aria-label={`${label}: ${points.length} points${points.length ? `, latest ${points[points.length - 1]!.y}` : ''}`}
    />
  );
}
