package perfmodel

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Calibration grid (docs/models.md, "GPU calibration"): the staging cost in steps of 5
// thousandths of a cycle, the two harness offsets in whole µs.
const (
	calStageStep, calStageMax = 5, 300
	calOffsetMaxUS            = 100
)

// TestGPUCalibration re-runs the fit of the three calibrated constants on the A100
// NeuSight rows only (both A100 parts, linear and bmm; no H100 row is read) and checks
// that the presets and the validation harness use its result. The fit is an exhaustive
// grid search minimising the mean absolute % error of all A100 rows: for every staging
// cost on the grid, each op type's offset is the whole-µs value minimising that op type's
// summed error (the op types' errors are independent given the staging cost); ties go to
// the smaller value.
//
//	go test ./pkg/perfmodel -run TestGPUCalibration -v
func TestGPUCalibration(t *testing.T) {
	var a100 []valRow
	params := map[string]Params{}
	for _, r := range neusightRows(t) {
		if strings.HasPrefix(r.preset, "a100-") {
			a100 = append(a100, r)
			params[r.preset] = presetParams(t, r.preset)
		}
	}
	best := struct {
		mape            float64
		stage           uint64
		linear, bmmOffs float64
	}{mape: math.Inf(1)}
	for stage := uint64(calStageStep); stage <= calStageMax; stage += calStageStep {
		// kernel and measured µs of the rows, per op type.
		var kernel, measured [2][]float64
		models := map[string]Model{}
		for _, r := range a100 {
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
		if m := 100 * total / float64(len(a100)); m < best.mape {
			best.mape, best.stage, best.linear, best.bmmOffs = m, stage, offs[0], offs[1]
		}
	}
	t.Logf("A100 fit over %d rows: StageMilli %d, linear offset %.0f µs, bmm offset %.0f µs, MAPE %.2f%%",
		len(a100), best.stage, best.linear, best.bmmOffs, best.mape)
	assert.Equal(t, uint64(gpuStageMilli), best.stage, "gpuStageMilli")
	assert.Equal(t, float64(neusightLinearOffsetUS), best.linear, "neusightLinearOffsetUS")
	assert.Equal(t, float64(neusightBmmOffsetUS), best.bmmOffs, "neusightBmmOffsetUS")
	for _, name := range []string{"a100-pcie-40gb", "a100-80gb-pcie", "h100-sxm"} {
		assert.Equal(t, uint64(gpuStageMilli), presetParams(t, name).GPU.StageMilli, name)
	}
}
