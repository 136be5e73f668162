package perfmodel

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Calibration grid (docs/models.md, "GPU calibration"): the staging cost in steps of 5
// thousandths of a cycle, the two harness offsets in whole µs.
const (
	calStageStep, calStageMax = 5, 300
	calOffsetMaxUS            = 100
)

// gpuFit is the result of the calibration on a set of rows.
type gpuFit struct {
	stage                   uint64
	linearOffset, bmmOffset float64
	mape                    float64 // of the rows fitted on, in %
	rows                    int
}

// fitGPU is the calibration: an exhaustive grid search for the staging cost and the two
// harness offsets minimising the mean absolute % error of rows. For every staging cost on
// the grid, each op type's offset is the whole-µs value minimising that op type's summed
// error (the op types' errors are independent given the staging cost); ties go to the
// smaller value.
func fitGPU(t testing.TB, rows []valRow) gpuFit {
	params := map[string]Params{}
	for _, r := range rows {
		params[r.preset] = presetParams(t, r.preset)
	}
	best := gpuFit{mape: math.Inf(1), rows: len(rows)}
	for stage := uint64(calStageStep); stage <= calStageMax; stage += calStageStep {
		// kernel and measured µs of the rows, per op type (0 linear, 1 bmm).
		var kernel, measured [2][]float64
		models := map[string]Model{}
		for _, r := range rows {
			p := params[r.preset]
			p.GPU.StageMilli = stage
			if models[r.preset] == nil {
				models[r.preset] = mustNew(t, KindGPU, p)
			}
			k := 1
			if r.op == "linear" {
				k = 0
			}
			kernel[k] = append(kernel[k], kernelUS(t, models[r.preset], p, r))
			measured[k] = append(measured[k], r.measuredUS)
		}
		total := 0.0
		var offs [2]float64
		for k := range offs {
			bestSum := math.Inf(1)
			for off := 0.0; off <= calOffsetMaxUS; off++ {
				sum := 0.0
				for i, y := range measured[k] {
					sum += math.Abs(kernel[k][i]+off-y) / y
				}
				if sum < bestSum {
					bestSum, offs[k] = sum, off
				}
			}
			total += bestSum
		}
		if m := 100 * total / float64(len(rows)); m < best.mape {
			best.mape, best.stage, best.linearOffset, best.bmmOffset = m, stage, offs[0], offs[1]
		}
	}
	return best
}

// neusightSubset returns the NeuSight rows whose device name has one of the prefixes.
func neusightSubset(t testing.TB, prefixes ...string) []valRow {
	var out []valRow
	for _, r := range neusightRows(t) {
		for _, p := range prefixes {
			if strings.HasPrefix(r.device, p) {
				out = append(out, r)
			}
		}
	}
	return out
}

// TestGPUCalibration re-runs the fit of the three calibrated constants on the A100
// NeuSight rows only (both A100 parts, linear and bmm; no H100 row is read) and checks
// that the presets and the validation harness use its result.
//
//	go test ./pkg/perfmodel -run TestGPUCalibration -v
func TestGPUCalibration(t *testing.T) {
	fit := fitGPU(t, neusightSubset(t, "NVIDIA A100"))
	t.Logf("A100 fit over %d rows: StageMilli %d, linear offset %.0f µs, bmm offset %.0f µs, MAPE %.2f%%",
		fit.rows, fit.stage, fit.linearOffset, fit.bmmOffset, fit.mape)
	assert.Equal(t, uint64(gpuStageMilli), fit.stage, "gpuStageMilli")
	assert.Equal(t, float64(neusightLinearOffsetUS), fit.linearOffset, "neusightLinearOffsetUS")
	assert.Equal(t, float64(neusightBmmOffsetUS), fit.bmmOffset, "neusightBmmOffsetUS")
	for _, name := range []string{"a100-pcie-40gb", "a100-80gb-pcie", "h100-sxm"} {
		assert.Equal(t, uint64(gpuStageMilli), presetParams(t, name).GPU.StageMilli, name)
	}
}

// scoreFit returns the MAPE (%) of rows with the fitted constants in place of the presets'.
func scoreFit(t testing.TB, fit gpuFit, rows []valRow) float64 {
	sum := 0.0
	for _, r := range rows {
		p := presetParams(t, r.preset)
		p.GPU.StageMilli = fit.stage
		off := fit.bmmOffset
		if r.op == "linear" {
			off = fit.linearOffset
		}
		sum += math.Abs(kernelUS(t, mustNew(t, KindGPU, p), p, r)+off-r.measuredUS) / r.measuredUS
	}
	return 100 * sum / float64(len(rows))
}

// TestGPUCalibrationSensitivity fits on each A100 part alone and scores the other part
// and the H100 with that fit: how much the result depends on which A100 rows calibrate.
// It only reports; the constants in use are TestGPUCalibration's.
//
//	go test ./pkg/perfmodel -run TestGPUCalibrationSensitivity -v
func TestGPUCalibrationSensitivity(t *testing.T) {
	if testing.Short() {
		t.Skip("refits twice")
	}
	h100 := neusightSubset(t, "NVIDIA H100")
	parts := map[string][]valRow{
		"A100-PCIE-40GB": neusightSubset(t, "NVIDIA A100-PCIE-40GB"),
		"A100 80GB PCIe": neusightSubset(t, "NVIDIA A100 80GB PCIe"),
	}
	var b strings.Builder
	b.WriteString("| calibrated on | StageMilli | linear offset µs | bmm offset µs | in-sample MAPE % | other A100 MAPE % | H100 MAPE % |\n|---|---|---|---|---|---|---|\n")
	for _, on := range []string{"A100-PCIE-40GB", "A100 80GB PCIe"} {
		other := "A100 80GB PCIe"
		if on == other {
			other = "A100-PCIE-40GB"
		}
		fit := fitGPU(t, parts[on])
		require.NotZero(t, fit.stage)
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.2f | %.2f | %.2f |\n", on, fit.stage, fit.linearOffset, fit.bmmOffset,
			fit.mape, scoreFit(t, fit, parts[other]), scoreFit(t, fit, h100))
	}
	t.Log("\n" + b.String())
}
