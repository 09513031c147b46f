// Small helpers; every page works without them. No inline handlers, so a strict CSP can hold.
(function () {
  "use strict";
  var WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  var CHECK = "10X98765432";

  // GB 11643: 17 digits, a birth date, then the MOD 11-2 check character.
  function checkIdNumber(value) {
    var v = value.trim().toUpperCase();
    if (!v) return "";
    if (v.length < 18) return "还差 " + (18 - v.length) + " 位";
    if (v.length > 18 || !/^[0-9]{17}[0-9X]$/.test(v)) return "须为 17 位数字加一位数字或 X";
    var y = +v.slice(6, 10), m = +v.slice(10, 12), d = +v.slice(12, 14);
    var born = new Date(y, m - 1, d);
    if (born.getFullYear() !== y || born.getMonth() !== m - 1 || born.getDate() !== d || y < 1900 || born > new Date()) {
      return "出生日期 " + v.slice(6, 14) + " 无效";
    }
    var sum = 0;
    for (var i = 0; i < 17; i++) sum += (+v[i]) * WEIGHTS[i];
    if (CHECK[sum % 11] !== v[17]) return "校验位不符，请核对号码";
    return null;
  }

  document.querySelectorAll("[data-id-number]").forEach(function (input) {
    var hint = input.parentElement.querySelector("[data-id-hint]");
    input.addEventListener("input", function () {
      var problem = checkIdNumber(input.value);
      if (!hint) return;
      hint.textContent = problem === null ? "号码格式正确" : problem;
      hint.className = "hint " + (problem === null ? "good" : problem ? "bad" : "");
      input.setCustomValidity(problem && input.value.trim().length >= 18 ? problem : "");
    });
  });

  // A bill submits only when its layers and the own payment add up to the total (in fen, exactly).
  function fen(text) {
    var t = (text || "0").trim() || "0";
    if (!/^\d+(\.\d{1,2})?$/.test(t)) return NaN;
    var parts = t.split(".");
    return (+parts[0]) * 100 + (parts[1] ? +(parts[1] + "0").slice(0, 2) : 0);
  }
  document.querySelectorAll("form[data-sum-check]").forEach(function (form) {
    var status = form.querySelector("[data-sum-status]");
    var button = form.querySelector("button[type=submit]");
    function update() {
      var total = fen(form.querySelector("[data-total]").value);
      var sum = 0;
      form.querySelectorAll("[data-layer]").forEach(function (el) { sum += fen(el.value); });
      var ok = !isNaN(total) && !isNaN(sum) && total > 0 && sum === total;
      status.textContent = isNaN(total) || isNaN(sum) ? "金额格式不正确（最多两位小数）" :
        ok ? "合计正确：" + (sum / 100).toFixed(2) + " 元" :
        "各项报销与个人自付合计 " + (sum / 100).toFixed(2) + " 元，总费用 " + (total / 100).toFixed(2) + " 元，尚不相等";
      status.className = "sum " + (ok ? "good" : "bad");
      button.disabled = !ok;
    }
    form.addEventListener("input", update);
    update();
  });
})();
