/* The book's interactive figures: sliders over a grid of runs that a notebook computed.
 *
 * Each figure is a <div class="ol-interactive"> holding, as JSON, a Vega-Lite specification
 * whose data the notebook computed with optimlab (optimlab/interactive.py) and a list of
 * sliders, one per grid axis (a Vega-Lite parameter holding an index into the grid). This
 * script only draws: it compiles the specification with the vendored Vega-Lite, renders it
 * as SVG with the vendored Vega, and sets a parameter when its slider moves. Nothing is
 * computed here and nothing is loaded from anywhere.
 *
 * Colours follow the page's light or dark theme; the width follows the column, so that the
 * figure stays legible on a 390 px phone. Printed pages and readers without JavaScript get
 * the figure's fallback text instead (see site.css).
 */
(function () {
  'use strict';

  // Okabe-Ito colours as the book's matplotlib figures use them, and their dark-theme twins.
  const DARK = {
    '#0072B2': '#56B4E9', '#D55E00': '#F0884A', '#000000': '#FFFFFF',
    '#9A9A9A': '#8A8F96', '#7F7F7F': '#A0A6AD', '#009E73': '#2BC79A', '#CC79A7': '#E39BC4',
  };
  const MAX_PLOT_WIDTH = 420;  // CSS px of a panel's plotting area
  const AXIS_ROOM = 78;         // CSS px left of and around the plotting area (labels, titles)
  const MIN_PLOT_WIDTH = 200;

  const isDark = () => document.documentElement.dataset.theme === 'dark';

  function themeConfig(dark) {
    const ink = dark ? '#DDE1E6' : '#222222';
    const grid = dark ? '#3B4048' : '#E3E3E3';
    const label = {labelColor: ink, titleColor: ink, labelFontSize: 12, titleFontSize: 12};
    return {
      background: null,
      font: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
      view: {stroke: null},
      axis: {...label, domainColor: ink, tickColor: ink, gridColor: grid, titleFontWeight: 'normal'},
      legend: {...label, titleFontWeight: 'normal'},
      title: {color: ink, fontSize: 13, fontWeight: 'normal', anchor: 'start'},
      text: {color: ink, fontSize: 13},
    };
  }

  // A copy of the specification with colours for the theme and panels as wide as the column.
  function prepare(spec, dark, plotWidth, state) {
    const copy = JSON.parse(JSON.stringify(spec), (key, value) =>
      dark && typeof value === 'string' && DARK[value.toUpperCase()] ? DARK[value.toUpperCase()] : value);
    for (const panel of copy.vconcat || copy.hconcat || [copy]) {
      if (typeof panel.width === 'number') {
        if (panel.height === panel.width) panel.height = plotWidth;  // square panels stay square
        panel.width = plotWidth;
      }
    }
    for (const param of copy.params || []) {
      if (param.name in state) param.value = state[param.name];
    }
    copy.config = Object.assign(themeConfig(dark), copy.config || {});
    copy.autosize = {type: 'pad'};
    return copy;
  }

  class Figure {
    constructor(root) {
      this.root = root;
      this.def = JSON.parse(root.querySelector('script.ol-interactive-spec').textContent);
      this.state = {};
      this.view = null;
      this.width = 0;
      this.build();
    }

    build() {
      const controls = document.createElement('div');
      controls.className = 'ol-controls';
      for (const slider of this.def.sliders) {
        this.state[slider.param] = slider.value;
        const label = document.createElement('label');
        label.className = 'ol-slider';
        const name = document.createElement('span');
        name.className = 'ol-slider-name';
        name.innerHTML = slider.label;
        const input = document.createElement('input');
        Object.assign(input, {type: 'range', min: 0, max: slider.labels.length - 1, step: 1,
                              value: slider.value});
        input.dataset.param = slider.param;
        const output = document.createElement('output');
        output.className = 'ol-slider-value';
        const show = () => {
          const text = slider.labels[+input.value];
          output.textContent = text;
          input.setAttribute('aria-valuetext', `${name.textContent} = ${text}`);
        };
        show();
        input.addEventListener('input', () => {
          show();
          this.state[slider.param] = +input.value;
          if (this.view) {
            this.view.signal(slider.param, +input.value);
            this.render(this.view.runAsync());
          }
        });
        label.append(name, input, output);
        controls.append(label);
      }
      this.chart = document.createElement('div');
      this.chart.className = 'ol-chart';
      this.root.append(controls, this.chart);
      this.root.classList.add('ol-ready');
      this.draw();
      new ResizeObserver(() => {
        if (this.plotWidth() !== this.width) this.draw();
      }).observe(this.root);
    }

    plotWidth() {
      const room = this.root.clientWidth - AXIS_ROOM;
      return Math.round(Math.max(MIN_PLOT_WIDTH, Math.min(MAX_PLOT_WIDTH, room)));
    }

    draw() {
      this.width = this.plotWidth();
      const spec = prepare(this.def.spec, isDark(), this.width, this.state);
      const compiled = vegaLite.compile(spec).spec;
      if (this.view) this.view.finalize();
      this.chart.replaceChildren();
      this.view = new vega.View(vega.parse(compiled), {
        renderer: 'svg', container: this.chart, hover: true, logLevel: vega.Warn,
      });
      this.render(this.view.runAsync());
    }

    // Record the settings shown once Vega has drawn them (the browser tests wait for this).
    render(promise) {
      const settings = JSON.stringify(this.state);
      this.root.dataset.theme = isDark() ? 'dark' : 'light';
      return promise.then(() => {
        if (JSON.stringify(this.state) === settings) this.root.dataset.rendered = settings;
      }).catch(error => console.error('interactive figure', this.def.name, error));
    }
  }

  function start() {
    const figures = [...document.querySelectorAll('.ol-interactive')].map(root => {
      try {
        return new Figure(root);
      } catch (error) {
        console.error('interactive figure', root.id, error);
        return null;
      }
    }).filter(Boolean);
    // Redraw in the other colours when the reader switches the theme.
    new MutationObserver(() => figures.forEach(figure => {
      if (figure.root.dataset.theme !== (isDark() ? 'dark' : 'light')) figure.draw();
    })).observe(document.documentElement, {attributes: true, attributeFilter: ['data-theme']});
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
